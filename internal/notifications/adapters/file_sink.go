package adapters

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
)

// FileSink appends each notification to a file as one JSON line: a
// stand-in for an email provider that tests and demos can read back.
//
// It delivers each event's notification at most once, across restarts: on
// open it reads the event ids already in the file, and Send skips those.
// That closes the window between a Send and the commit of the
// notification's transaction, where a crash makes the event be handled
// again. A line torn by a crash mid-write does not count as delivered; the
// next line starts after it. One process may write a file at a time, and
// the delivered ids are kept in memory, which suits a development sink.
type FileSink struct {
	mu        sync.Mutex
	f         *os.File
	delivered map[string]bool
	// torn is set while the file may end in a partial line.
	torn bool
}

var _ app.Sink = (*FileSink)(nil)

// fileRecord is one line of the file.
type fileRecord struct {
	ID        string    `json:"id"`
	EventID   string    `json:"event_id"`
	UserID    string    `json:"user_id"`
	Kind      string    `json:"kind"`
	Channel   string    `json:"channel"`
	Recipient string    `json:"recipient"`
	Subject   string    `json:"subject"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// OpenFileSink opens (creating it and its directory when missing) the file
// at path for appending, and reads which events it already holds. Close
// releases it.
func OpenFileSink(path string) (*FileSink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create notifications file directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open notifications file: %w", err)
	}
	s := &FileSink{f: f, delivered: map[string]bool{}}
	if err := s.load(); err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// load reads the event ids of the complete lines in the file.
func (s *FileSink) load() error {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read notifications file: %w", err)
	}
	r := bufio.NewReader(s.f)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			// Anything after the last newline is a torn write.
			s.torn = len(line) > 0
			return nil
		}
		if err != nil {
			return fmt.Errorf("read notifications file: %w", err)
		}
		var rec struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(bytes.TrimSpace(line), &rec) == nil && rec.EventID != "" {
			s.delivered[rec.EventID] = true
		}
	}
}

// Send implements app.Sink: it appends n as a line and syncs the file,
// unless a line for n.EventID is there already.
func (s *FileSink) Send(_ context.Context, n domain.Notification) error {
	line, err := json.Marshal(fileRecord{
		ID: n.ID, EventID: n.EventID, UserID: n.UserID, Kind: n.Kind, Channel: n.Channel,
		Recipient: n.Recipient, Subject: n.Subject, Body: n.Body, CreatedAt: n.CreatedAt,
	})
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("notifications file is closed")
	}
	if s.delivered[n.EventID] {
		return nil
	}
	if s.torn {
		line = append([]byte{'\n'}, line...)
	}
	if _, err := s.f.Write(line); err != nil {
		s.torn = true
		return fmt.Errorf("append to notifications file: %w", err)
	}
	s.torn = false
	// The line is in the file now: count it even if the sync fails, so a
	// retry does not write it twice.
	s.delivered[n.EventID] = true
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync notifications file: %w", err)
	}
	return nil
}

// Close closes the file; later Sends fail.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
