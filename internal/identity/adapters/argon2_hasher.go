package adapters

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sync/semaphore"
)

// Argon2Params are argon2id cost parameters.
type Argon2Params struct {
	// Memory in KiB.
	Memory      uint32
	Iterations  uint32
	Parallelism uint8
	SaltLength  uint32
	KeyLength   uint32
}

// DefaultArgon2Params follow the OWASP minimum for argon2id: 19 MiB of
// memory, 2 iterations, 1 lane, a 16-byte salt and a 32-byte key.
var DefaultArgon2Params = Argon2Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Bounds on parameters read back from a stored hash, so a corrupted or
// planted row cannot make one login allocate gigabytes or spin for minutes.
const (
	maxStoredMemory     = 1 << 20 // 1 GiB
	maxStoredIterations = 16
	maxStoredKeyLength  = 128
)

// ErrMalformedHash means a stored hash is not an argon2id PHC string this
// hasher can check.
var ErrMalformedHash = errors.New("malformed argon2id hash")

// Argon2Hasher hashes and checks passwords with argon2id. At most
// maxConcurrent hashes run at once; the others wait their turn (or until
// their context ends), so a burst of logins queues instead of exhausting
// memory. It is safe for concurrent use.
type Argon2Hasher struct {
	params Argon2Params
	slots  *semaphore.Weighted

	// Each hash allocates Memory KiB (19 MiB by default) that the Go heap
	// would otherwise keep for minutes; once hashing has been idle for
	// idleRelease the memory is handed back to the OS, so an idle identity
	// process stays small.
	mu       sync.Mutex
	inFlight int
	release  *time.Timer
}

// idleRelease is how long hashing must be idle before its memory is
// returned to the OS.
const idleRelease = 2 * time.Second

// NewArgon2Hasher returns a hasher with params, running at most
// maxConcurrent hashes at once (at least one).
func NewArgon2Hasher(params Argon2Params, maxConcurrent int) *Argon2Hasher {
	return &Argon2Hasher{params: params, slots: semaphore.NewWeighted(int64(max(1, maxConcurrent)))}
}

// Params returns the parameters new hashes use.
func (h *Argon2Hasher) Params() Argon2Params { return h.params }

// Hash returns password's PHC-encoded argon2id hash with a fresh salt:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>.
func (h *Argon2Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLength)
	_, _ = rand.Read(salt) // never fails (crypto/rand panics instead)
	key, err := h.derive(ctx, password, salt, h.params)
	if err != nil {
		return "", err
	}
	p := h.params
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether password matches the encoded hash, comparing in
// constant time. The cost is the one recorded in the hash. An error means
// the hash is malformed or ctx ended while waiting for a slot.
func (h *Argon2Hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got, err := h.derive(ctx, password, salt, p)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Burn spends the work of one Verify and discards it, so answering about
// an account that does not exist takes as long as about one that does.
func (h *Argon2Hasher) Burn(ctx context.Context, password string) error {
	salt := make([]byte, h.params.SaltLength)
	_, _ = rand.Read(salt)
	_, err := h.derive(ctx, password, salt, h.params)
	return err
}

// NeedsRehash reports whether encoded was made with other parameters than
// the current ones (so it should be replaced at the next good login).
func (h *Argon2Hasher) NeedsRehash(encoded string) bool {
	p, _, _, err := decodeHash(encoded)
	return err != nil || p != h.params
}

func (h *Argon2Hasher) derive(ctx context.Context, password string, salt []byte, p Argon2Params) ([]byte, error) {
	if err := h.slots.Acquire(ctx, 1); err != nil {
		return nil, fmt.Errorf("wait for a hashing slot: %w", err)
	}
	defer h.slots.Release(1)
	h.started()
	defer h.finished()
	return argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLength), nil
}

func (h *Argon2Hasher) started() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight++
	if h.release != nil {
		h.release.Stop()
		h.release = nil
	}
}

func (h *Argon2Hasher) finished() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight--
	if h.inFlight == 0 && h.release == nil {
		h.release = time.AfterFunc(idleRelease, h.releaseIfIdle)
	}
}

func (h *Argon2Hasher) releaseIfIdle() {
	h.mu.Lock()
	idle := h.inFlight == 0
	h.release = nil
	h.mu.Unlock()
	if idle {
		debug.FreeOSMemory()
	}
}

func decodeHash(encoded string) (Argon2Params, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Argon2Params{}, nil, nil, ErrMalformedHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return Argon2Params{}, nil, nil, ErrMalformedHash
	}
	var p Argon2Params
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Iterations, &p.Parallelism); err != nil || n != 3 {
		return Argon2Params{}, nil, nil, ErrMalformedHash
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil {
		return Argon2Params{}, nil, nil, ErrMalformedHash
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil {
		return Argon2Params{}, nil, nil, ErrMalformedHash
	}
	if p.Memory == 0 || p.Memory > maxStoredMemory || p.Iterations == 0 || p.Iterations > maxStoredIterations ||
		p.Parallelism == 0 || len(salt) < 8 || len(key) < 16 || len(key) > maxStoredKeyLength {
		return Argon2Params{}, nil, nil, ErrMalformedHash
	}
	p.SaltLength, p.KeyLength = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}
