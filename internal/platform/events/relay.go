package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

const (
	defaultBatchSize      = 100
	maxBatchSize          = 1000 // stays well under the client's 4000 unacknowledged async publishes
	defaultPollInterval   = time.Second
	defaultPublishTimeout = 10 * time.Second
	defaultRetention      = 24 * time.Hour
	defaultCoalesce       = 10 * time.Millisecond
	pruneInterval         = time.Minute
	maxRetryDelay         = 30 * time.Second
	// markTimeout bounds the UPDATE that follows a publish. It is not tied
	// to the caller's context so that a stop does not strand published rows.
	markTimeout = 10 * time.Second
)

// Relay moves committed outbox rows to JetStream. Run it once per process
// that writes events (it may run in several replicas of a service).
type Relay struct {
	outbox         *Outbox
	js             jetstream.JetStream
	logger         *slog.Logger
	batchSize      int
	pollInterval   time.Duration
	publishTimeout time.Duration
	retention      time.Duration
	coalesce       time.Duration
	registerer     prometheus.Registerer
	metrics        *relayMetrics

	// afterPublish runs between publishing a batch and marking it; an error
	// skips the marking, as a crash at that point would. Tests only.
	afterPublish func() error
}

// RelayOption configures a Relay. Options given non-positive values keep the
// default.
type RelayOption func(*Relay)

// WithBatchSize sets how many rows are claimed and published at once
// (default 100, at most 1000).
func WithBatchSize(n int) RelayOption {
	return func(r *Relay) {
		if n > 0 {
			r.batchSize = min(n, maxBatchSize)
		}
	}
}

// WithPollInterval sets how often the relay looks for rows without being
// woken (default 1s); it covers a missed Wake and rows written by another
// process.
func WithPollInterval(d time.Duration) RelayOption {
	return func(r *Relay) {
		if d > 0 {
			r.pollInterval = d
		}
	}
}

// WithPublishTimeout bounds the wait for JetStream to acknowledge a batch
// (default 10s).
func WithPublishTimeout(d time.Duration) RelayOption {
	return func(r *Relay) {
		if d > 0 {
			r.publishTimeout = d
		}
	}
}

// WithRetention sets how long published rows are kept, for inspection,
// before the relay deletes them (default 24h). A negative value keeps them
// forever.
func WithRetention(d time.Duration) RelayOption {
	return func(r *Relay) {
		if d != 0 {
			r.retention = d
		}
	}
}

// WithCoalesce sets how long the relay waits after a wake-up before it
// claims rows (default 10ms; negative: not at all). Under load every
// commit wakes it, and each claim is a transaction of its own; waiting a
// moment lets one transaction carry the events of many commits, at the
// price of publishing them that much later.
func WithCoalesce(d time.Duration) RelayOption {
	return func(r *Relay) {
		switch {
		case d > 0:
			r.coalesce = d
		case d < 0:
			r.coalesce = 0
		}
	}
}

// WithRelayMetrics registers the relay's metrics on reg: outbox lag (pending
// rows and the age of the oldest), events published, duplicates and
// failures. Without it, or with nil, the relay records no metrics.
func WithRelayMetrics(reg prometheus.Registerer) RelayOption {
	return func(r *Relay) { r.registerer = reg }
}

// NewRelay returns a relay publishing o's rows to js. A nil logger discards
// logs. Like prometheus.MustRegister, it panics if its metrics clash with
// differently shaped collectors already on the registerer.
func NewRelay(o *Outbox, js jetstream.JetStream, logger *slog.Logger, opts ...RelayOption) *Relay {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		outbox:         o,
		js:             js,
		logger:         logger,
		batchSize:      defaultBatchSize,
		pollInterval:   defaultPollInterval,
		publishTimeout: defaultPublishTimeout,
		retention:      defaultRetention,
		coalesce:       defaultCoalesce,
	}
	for _, opt := range opts {
		opt(r)
	}
	metrics, err := newRelayMetrics(r.registerer)
	if err != nil {
		panic(err)
	}
	r.metrics = metrics
	return r
}

// Run publishes committed outbox rows in order of insertion, each with
// Nats-Msg-Id set to its event id, and marks a row published once JetStream
// has acknowledged it. It works whenever Outbox.Wake is called and every
// poll interval, and keeps retrying, with backoff, while NATS or the
// database fails: an event is never dropped.
//
// Delivery is at least once. A crash between publish and mark republishes
// the row on restart, and JetStream drops the copy within DuplicateWindow.
// Rows are published in order, pipelined within a batch. When a publish
// fails, the rows after it that JetStream did store stay published, and the
// failed one follows them on retry: order is best effort, as it is for
// consumers anyway, whose failed messages are redelivered after later ones.
//
// Several relays may run on one database. On PostgreSQL a batch is claimed
// with SELECT ... FOR UPDATE, so a second relay waits for the first one's
// batch rather than skipping ahead of it (SKIP LOCKED would publish
// concurrent batches out of order for no real gain in throughput). On
// SQLite, which one process owns, nothing is locked during the publish, to
// keep the single writer free; two relays there would only publish
// duplicates, which the stream drops.
//
// Run returns nil once ctx is cancelled, after finishing the batch in flight.
func (r *Relay) Run(ctx context.Context) error {
	poll := time.NewTicker(r.pollInterval)
	defer poll.Stop()
	var (
		failures           int
		lastLag, lastPrune time.Time
	)
	for {
		if err := r.drain(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			r.metrics.publishErrors.Inc()
			r.logger.ErrorContext(ctx, "outbox relay failed, will retry", "error", err, "failures", failures)
		} else {
			failures = 0
		}

		now := time.Now()
		if r.registerer != nil && (failures > 0 || now.Sub(lastLag) >= r.pollInterval) {
			lastLag = now
			r.updateLag(ctx)
		}
		if r.retention > 0 && now.Sub(lastPrune) >= pruneInterval {
			lastPrune = now
			r.prune(ctx)
		}

		if failures > 0 {
			// Wake is ignored while failing, so that a burst of commits does
			// not hammer a NATS server that is down.
			delay := min(r.pollInterval<<min(failures-1, 6), max(maxRetryDelay, r.pollInterval))
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.outbox.wake:
			if !r.gather(ctx) {
				return nil
			}
		case <-poll.C:
		}
	}
}

// gather waits the coalescing delay after a wake-up, so that the commits
// made meanwhile go out in the same claim. It reports false if ctx ended.
func (r *Relay) gather(ctx context.Context) bool {
	if r.coalesce <= 0 {
		return true
	}
	timer := time.NewTimer(r.coalesce)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// drain relays batches until the outbox is empty.
func (r *Relay) drain(ctx context.Context) error {
	for ctx.Err() == nil {
		n, err := r.relayBatch(ctx)
		if err != nil {
			return err
		}
		if n < r.batchSize {
			return nil
		}
	}
	return nil
}

type outboxRow struct {
	seq     int64
	eventID string
	subject string
	payload []byte
	headers map[string]string
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// relayBatch claims, publishes and marks one batch, returning how many rows
// it claimed.
func (r *Relay) relayBatch(ctx context.Context) (int, error) {
	// Once a batch is claimed it is published and marked even if ctx is
	// cancelled meanwhile, so a graceful stop leaves nothing to republish.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.publishTimeout+markTimeout)
	defer cancel()

	if r.outbox.db.Dialect != db.Postgres {
		batch, err := r.claim(ctx, r.outbox.db, "")
		if err != nil || len(batch) == 0 {
			return 0, err
		}
		marked, err := r.publishAndMark(work, r.outbox.db, batch)
		r.metrics.published.Add(float64(marked))
		return len(batch), err
	}

	tx, err := r.outbox.db.BeginTx(work, nil)
	if err != nil {
		return 0, fmt.Errorf("begin outbox claim: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// ctx, not work: a relay waiting behind another one's locks must still
	// stop promptly.
	batch, err := r.claim(ctx, tx, " FOR UPDATE")
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	marked, markErr := r.publishAndMark(work, tx, batch)
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit outbox marks: %w", err)
	}
	r.metrics.published.Add(float64(marked))
	return len(batch), markErr
}

func (r *Relay) claim(ctx context.Context, q querier, lockClause string) ([]outboxRow, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT seq, event_id, subject, payload, headers FROM outbox
		 WHERE published_at IS NULL ORDER BY seq LIMIT $1`+lockClause, r.batchSize)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	defer rows.Close()
	var batch []outboxRow
	for rows.Next() {
		var (
			row     outboxRow
			headers string
		)
		if err := rows.Scan(&row.seq, &row.eventID, &row.subject, &row.payload, &headers); err != nil {
			return nil, fmt.Errorf("read outbox row: %w", err)
		}
		if err := json.Unmarshal([]byte(headers), &row.headers); err != nil {
			return nil, fmt.Errorf("decode headers of event %s: %w", row.eventID, err)
		}
		batch = append(batch, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox rows: %w", err)
	}
	return batch, nil
}

// publishAndMark publishes batch and marks the rows JetStream acknowledged.
// It returns how many rows it marked and the first publish failure.
func (r *Relay) publishAndMark(ctx context.Context, q querier, batch []outboxRow) (int, error) {
	acked, pubErr := r.publish(ctx, batch)
	if r.afterPublish != nil {
		if err := r.afterPublish(); err != nil {
			return 0, err
		}
	}
	if len(acked) > 0 {
		_, err := q.ExecContext(ctx,
			`UPDATE outbox SET published_at = `+nowSQL(r.outbox.db.Dialect)+
				` WHERE seq IN (`+placeholders(1, len(acked))+`)`, acked...)
		if err != nil {
			return 0, fmt.Errorf("mark %d outbox rows published: %w", len(acked), err)
		}
		r.logger.DebugContext(ctx, "outbox events published", "count", len(acked))
	}
	return len(acked), pubErr
}

// publish sends the whole batch before waiting for any acknowledgement, and
// returns the seqs of the rows JetStream stored (or already had). Rows after
// a failed one are still marked when acknowledged, so that a row that keeps
// failing does not get those behind it stored again on every retry.
func (r *Relay) publish(ctx context.Context, batch []outboxRow) (acked []any, firstErr error) {
	ctx, cancel := context.WithTimeout(ctx, r.publishTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	for _, row := range batch {
		msg := nats.NewMsg(row.subject)
		msg.Data = row.payload
		for k, v := range row.headers {
			msg.Header.Set(k, v)
		}
		msg.Header.Set(HeaderEventID, row.eventID)
		// No per-message retry: a message the client retried on its own would
		// be overtaken by those sent after it. The relay retries the batch.
		future, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(row.eventID), jetstream.WithRetryAttempts(0))
		if err != nil {
			firstErr = fmt.Errorf("publish event %s to %s: %w", row.eventID, row.subject, err)
			break
		}
		futures = append(futures, future)
	}
	acked = make([]any, 0, len(futures))
	for i, future := range futures {
		select {
		case ack := <-future.Ok():
			acked = append(acked, batch[i].seq)
			if ack.Duplicate {
				r.metrics.duplicates.Inc()
			}
		case err := <-future.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish event %s to %s: %w", batch[i].eventID, batch[i].subject, err)
			}
		case <-ctx.Done():
			// The rest are unknown: republishing them is safe.
			return acked, errors.Join(firstErr, fmt.Errorf("wait for ack of event %s: %w", batch[i].eventID, ctx.Err()))
		}
	}
	return acked, firstErr
}

func (r *Relay) updateLag(ctx context.Context) {
	var (
		pending int64
		age     float64
	)
	err := r.outbox.db.QueryRowContext(ctx,
		`SELECT count(*), COALESCE(`+ageSecondsSQL(r.outbox.db.Dialect, "min(created_at)")+`, 0)
		 FROM outbox WHERE published_at IS NULL`).Scan(&pending, &age)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.WarnContext(ctx, "outbox lag not measured", "error", err)
		}
		return
	}
	r.metrics.pending.Set(float64(pending))
	r.metrics.oldestAge.Set(max(age, 0))
}

func (r *Relay) prune(ctx context.Context) {
	d := r.outbox.db.Dialect
	res, err := r.outbox.db.ExecContext(ctx,
		`DELETE FROM outbox WHERE published_at IS NOT NULL AND `+olderThanSQL(d, "published_at", "$1"),
		int64(r.retention/time.Second))
	if err != nil {
		if ctx.Err() == nil {
			r.logger.WarnContext(ctx, "published outbox rows not pruned", "error", err)
		}
		return
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		r.logger.DebugContext(ctx, "published outbox rows pruned", "count", n)
	}
}
