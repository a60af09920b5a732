package apperr

import (
	"errors"
	"fmt"
	"testing"
)

func TestKindSurvivesWrapping(t *testing.T) {
	notFound := New(NotFound, "product not found")
	wrapped := fmt.Errorf("get product: %w", notFound)

	if !errors.Is(wrapped, notFound) {
		t.Fatal("errors.Is lost the sentinel")
	}
	if got := KindOf(wrapped); got != NotFound {
		t.Fatalf("KindOf = %v, want not_found", got)
	}
	if k, msg := Public(wrapped); k != NotFound || msg != "product not found" {
		t.Fatalf("Public = %v %q", k, msg)
	}
}

func TestUnclassifiedIsInternalAndMasked(t *testing.T) {
	err := fmt.Errorf("query: %w", errors.New("pq: connection reset"))
	if k, msg := Public(err); k != Internal || msg != "" {
		t.Fatalf("Public = %v %q, want internal and no message", k, msg)
	}
}

func TestOptionsTravelWithTheFirstKindedError(t *testing.T) {
	busy := New(Conflict, "payment has a capture in progress",
		Retryable(), WithCause("capture_in_progress"), WithMetadata("operation", "capture"))
	e, ok := As(fmt.Errorf("void: %w", busy))
	if !ok || e != busy {
		t.Fatalf("As = %v %v, want the sentinel", e, ok)
	}
	if !e.Retryable || e.Cause != "capture_in_progress" || e.Metadata["operation"] != "capture" {
		t.Fatalf("options lost: %+v", e)
	}
	plain := New(Conflict, "payment is voided")
	if plain.Retryable || plain.Cause != "" || plain.Metadata != nil {
		t.Fatalf("a plain error has no options: %+v", plain)
	}
	if _, ok := As(errors.New("unkinded")); ok {
		t.Fatal("As found a kinded error in an unkinded one")
	}
}
