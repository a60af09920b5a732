package launcher

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// adminPasswordFile keeps a generated admin password in the data directory,
// so every run on that directory prints (and sets) the same one.
const adminPasswordFile = "admin-password"

// resolveAdminPassword returns configured when set. Otherwise it returns
// the password kept in dataDir, generating a random one (130 bits) and
// saving it, readable by the owner only, the first time.
func resolveAdminPassword(dataDir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(dataDir, adminPasswordFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if pw := strings.TrimSpace(string(b)); len(pw) >= minAdminPassword {
			return pw, nil
		}
		// An empty or truncated file (a crash while writing) is replaced.
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("replace %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read admin password: %w", err)
	}

	pw := rand.Text()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("save admin password: %w", err)
	}
	if _, err := f.WriteString(pw + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("save admin password: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("save admin password: %w", err)
	}
	return pw, nil
}
