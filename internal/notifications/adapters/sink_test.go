package adapters_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/notifications/adapters"
)

type fileLine struct {
	ID        string `json:"id"`
	EventID   string `json:"event_id"`
	UserID    string `json:"user_id"`
	Kind      string `json:"kind"`
	Recipient string `json:"recipient"`
	Subject   string `json:"subject"`
	Body      string `json:"body"`
}

// readLines returns the file's lines, decoded; a line that is not JSON
// fails the test unless it is a torn write the test expects (skipTorn).
func readLines(t *testing.T, path string, skipTorn bool) []fileLine {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var lines []fileLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l fileLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			require.True(t, skipTorn, "line %q is not JSON", sc.Text())
			continue
		}
		lines = append(lines, l)
	}
	require.NoError(t, sc.Err())
	return lines
}

func openFileSink(t *testing.T, path string) *adapters.FileSink {
	t.Helper()
	s, err := adapters.OpenFileSink(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestFileSinkWritesOneLinePerEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail", "notifications.jsonl")
	s := openFileSink(t, path)
	n := newNotification("u-1")
	require.NoError(t, s.Send(t.Context(), n))
	retry := newNotification("u-1")
	retry.EventID = n.EventID // the same event handled again after a crash
	require.NoError(t, s.Send(t.Context(), retry))
	other := newNotification("u-2")
	require.NoError(t, s.Send(t.Context(), other))

	lines := readLines(t, path, false)
	require.Len(t, lines, 2)
	require.Equal(t, fileLine{ID: n.ID, EventID: n.EventID, UserID: "u-1", Kind: n.Kind,
		Recipient: n.Recipient, Subject: n.Subject, Body: n.Body}, lines[0])
	require.Equal(t, other.EventID, lines[1].EventID)
}

func TestFileSinkRemembersAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notifications.jsonl")
	first := openFileSink(t, path)
	n := newNotification("u-1")
	require.NoError(t, first.Send(t.Context(), n))
	require.NoError(t, first.Close())
	require.Error(t, first.Send(t.Context(), newNotification("u-1")), "a closed sink delivers nothing")

	second := openFileSink(t, path)
	require.NoError(t, second.Send(t.Context(), n))
	require.Len(t, readLines(t, path, false), 1)
}

func TestFileSinkRecoversFromATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notifications.jsonl")
	first := openFileSink(t, path)
	kept := newNotification("u-1")
	require.NoError(t, first.Send(t.Context(), kept))
	require.NoError(t, first.Close())
	torn := newNotification("u-1")
	// A crash in the middle of writing torn's line.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"id":"` + torn.ID + `","event_id":"` + torn.EventID + `","subj`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s := openFileSink(t, path)
	require.NoError(t, s.Send(t.Context(), torn), "a torn line does not count as delivered")
	require.NoError(t, s.Send(t.Context(), kept))
	lines := readLines(t, path, true)
	require.Len(t, lines, 2)
	require.Equal(t, []string{kept.EventID, torn.EventID}, []string{lines[0].EventID, lines[1].EventID})
}

func TestFileSinkConcurrentSendsOfOneEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notifications.jsonl")
	s := openFileSink(t, path)
	eventID := uuid.NewString()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			n := newNotification("u-1")
			n.EventID = eventID
			if err := s.Send(t.Context(), n); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.Len(t, readLines(t, path, false), 1)
}

func TestLogSink(t *testing.T) {
	var out bytes.Buffer
	s := adapters.NewLogSink(slog.New(slog.NewJSONHandler(&out, nil)))
	n := newNotification("u-1")
	require.NoError(t, s.Send(t.Context(), n))
	var line map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &line))
	require.Equal(t, "notification sent", line["msg"])
	require.Equal(t, n.Subject, line["subject"])
	require.Equal(t, n.Recipient, line["recipient"])
	require.Equal(t, n.EventID, line["event_id"])
}
