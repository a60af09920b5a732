package config

import (
	"strings"
	"testing"
	"time"
)

func TestEnvReportsEveryMalformedValue(t *testing.T) {
	env := NewEnvFrom(map[string]string{"A": "x", "B": "soon", "C": "7", "D": " "})
	_ = env.Int("A", 1)
	_ = env.Duration("B", time.Second)
	if got := env.Int("C", 1); got != 7 {
		t.Fatalf("C = %d, want 7", got)
	}
	if got := env.String("D", "def"); got != "def" {
		t.Fatalf("blank D = %q, want default", got)
	}
	err := env.Err()
	if err == nil || !strings.Contains(err.Error(), "A:") || !strings.Contains(err.Error(), "B:") {
		t.Fatalf("Err() = %v, want both A and B reported", err)
	}
}

func TestProblemsJoinsAll(t *testing.T) {
	var p Problems
	p.Add(true, "first")
	p.Add(false, "never")
	p.Include("db", NewEnvFrom(map[string]string{"X": "y"}).Err())
	p.Add(true, "second %d", 2)
	err := p.Err()
	if err == nil || !strings.Contains(err.Error(), "first") || !strings.Contains(err.Error(), "second 2") || strings.Contains(err.Error(), "never") {
		t.Fatalf("Err() = %v", err)
	}
}
