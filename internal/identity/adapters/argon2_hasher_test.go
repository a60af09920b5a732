package adapters

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/argon2"
)

// cheapParams keep the tests fast; production uses DefaultArgon2Params.
var cheapParams = Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func TestDefaultArgon2ParamsMeetTheMinimum(t *testing.T) {
	require.Equal(t, Argon2Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}, DefaultArgon2Params)
	require.GreaterOrEqual(t, DefaultArgon2Params.Memory, uint32(19*1024), "at least 19 MiB")
	require.GreaterOrEqual(t, DefaultArgon2Params.Iterations, uint32(2))
}

func TestArgon2HashWithDefaults(t *testing.T) {
	h := NewArgon2Hasher(DefaultArgon2Params, 1)
	encoded, err := h.Hash(t.Context(), "correct horse")
	require.NoError(t, err)

	parts := strings.Split(encoded, "$")
	require.Len(t, parts, 6)
	require.Equal(t, []string{"", "argon2id", "v=19", "m=19456,t=2,p=1"}, parts[:4])
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	require.NoError(t, err)
	require.Len(t, salt, 16)
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	require.NoError(t, err)
	// An independent derivation with the stored salt gives the stored key:
	// the string really is argon2id with these parameters.
	require.Equal(t, argon2.IDKey([]byte("correct horse"), salt, 2, 19456, 1, 32), key)

	ok, err := h.Verify(t.Context(), "correct horse", encoded)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, h.NeedsRehash(encoded))
}

func TestArgon2Verify(t *testing.T) {
	h := NewArgon2Hasher(cheapParams, 2)
	ctx := t.Context()
	encoded, err := h.Hash(ctx, "correct horse")
	require.NoError(t, err)
	again, err := h.Hash(ctx, "correct horse")
	require.NoError(t, err)
	require.NotEqual(t, encoded, again, "every hash has its own salt")

	for password, want := range map[string]bool{
		"correct horse": true, "correct horsE": false, "correct hors": false, "": false,
	} {
		ok, err := h.Verify(ctx, password, encoded)
		require.NoError(t, err)
		require.Equal(t, want, ok, "password %q", password)
	}

	malformed := []string{
		"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$!!!$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$",
	}
	for _, m := range malformed {
		ok, err := h.Verify(ctx, "correct horse", m)
		require.ErrorIs(t, err, ErrMalformedHash, "%q", m)
		require.False(t, ok)
		require.True(t, h.NeedsRehash(m))
	}
}

func TestArgon2NeedsRehashWhenParamsChange(t *testing.T) {
	old := NewArgon2Hasher(cheapParams, 1)
	encoded, err := old.Hash(t.Context(), "correct horse")
	require.NoError(t, err)

	stronger := cheapParams
	stronger.Iterations = 2
	h := NewArgon2Hasher(stronger, 1)

	require.True(t, h.NeedsRehash(encoded))
	ok, err := h.Verify(t.Context(), "correct horse", encoded)
	require.NoError(t, err)
	require.True(t, ok, "old hashes verify with the parameters stored in them")
}

func TestArgon2BoundsConcurrentHashes(t *testing.T) {
	h := NewArgon2Hasher(cheapParams, 2)
	// Occupy both slots, as two long hashes would.
	require.NoError(t, h.slots.Acquire(t.Context(), 2))

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := h.Hash(ctx, "correct horse")
	require.ErrorIs(t, err, context.DeadlineExceeded, "a hash waits for a slot until its context ends")
	_, err = h.Verify(ctx, "correct horse", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, h.Burn(ctx, "x"), context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(t.Context(), "correct horse")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("hash ran without a free slot: %v", err)
	default:
	}
	h.slots.Release(1)
	require.NoError(t, <-done, "a freed slot lets the waiting hash run")
	h.slots.Release(1)
}

func TestArgon2AtLeastOneSlot(t *testing.T) {
	h := NewArgon2Hasher(cheapParams, 0)
	_, err := h.Hash(t.Context(), "correct horse")
	require.NoError(t, err)
}
