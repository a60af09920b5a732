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
