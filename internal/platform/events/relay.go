package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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

	defaultMaxAttempts   = 10
	defaultRowRetryFirst = time.Second
	defaultRowRetryLimit = 5 * time.Minute
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
	maxAttempts    int
	rowRetryFirst  time.Duration
	rowRetryLimit  time.Duration
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

// WithMaxAttempts sets how many refused publishes of one row move it aside
// to outbox_dead (default 10).
func WithMaxAttempts(n int) RelayOption {
	return func(r *Relay) {
		if n > 0 {
			r.maxAttempts = n
		}
	}
}

// WithRowBackoff sets how long a row JetStream refused waits before it is
// tried again: first after the first refusal, doubling up to limit after
// the next ones (default 1s to 5m). Each wait is drawn between half of it
// and all of it, and ends at a poll of the relay.
func WithRowBackoff(first, limit time.Duration) RelayOption {
	return func(r *Relay) {
		if first > 0 {
			r.rowRetryFirst = first
		}
		if limit > 0 {
			r.rowRetryLimit = limit
		}
	}
}

// WithRelayMetrics registers the relay's metrics on reg: outbox lag (pending
// rows, the age of the oldest, rows retrying, rows moved aside), events
// published, duplicates, refused publishes and failures. Without it, or
// with nil, the relay records no metrics.
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
		maxAttempts:    defaultMaxAttempts,
		rowRetryFirst:  defaultRowRetryFirst,
		rowRetryLimit:  defaultRowRetryLimit,
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
// Two kinds of failure are told apart. When NATS is unavailable (the
// connection is down, acknowledgements do not come, JetStream is not
// ready), the whole relay backs off, up to 30s between tries, and no row is
// blamed. When JetStream refuses one row (no stream binds its subject, it is
// larger than allowed), only that row waits: it is tried again on its own
// backoff (WithRowBackoff), its attempts and last error kept in the outbox,
// while the rows behind it keep flowing; after WithMaxAttempts refusals it
// is moved aside to outbox_dead, where ListDeadOutbox shows it and
// ReplayDeadOutbox puts it back.
//
// Delivery is at least once. A crash between publish and mark republishes
// the row on restart, and JetStream drops the copy within DuplicateWindow.
// Ordering: rows that publish at their first try reach the stream in order
// of insertion, pipelined within a batch. A row that failed loses its
// place: the rows after it that JetStream did store stay published, and the
// failed one follows them, on the relay's next try after an outage or
// after its own backoff when refused. Order is best effort, as it is for
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
	seq      int64
	eventID  string
	subject  string
	payload  []byte
	headers  map[string]string
	attempts int
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// published is what became of a batch's publishes.
type published struct {
	// acked are the seqs of the rows JetStream stored (or already had).
	acked []any
	// refused are the rows JetStream refused: each waits on its own.
	refused []refusal
	// unavailable is set when NATS failed; the rows neither acked nor
	// refused are retried as they are.
	unavailable error
}

type refusal struct {
	row outboxRow
	err error
}

// recorded counts what record did, for the metrics once committed.
type recorded struct{ marked, refused, movedAside int }

// relayBatch claims, publishes and records one batch, returning how many
// rows it claimed; its error is NATS or the database failing.
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
		res, err := r.publishBatch(work, batch)
		if err != nil {
			return 0, err
		}
		// A write transaction of its own, after the publish, so that the
		// single writer is not held while waiting for NATS.
		var rec recorded
		err = r.outbox.db.InTx(work, func(tx *sql.Tx) error {
			var recordErr error
			rec, recordErr = r.record(work, tx, res)
			return recordErr
		})
		if err != nil {
			return 0, err
		}
		r.count(rec)
		return len(batch), res.unavailable
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
	res, err := r.publishBatch(work, batch)
	if err != nil {
		return 0, err
	}
	rec, err := r.record(work, tx, res)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit outbox marks: %w", err)
	}
	r.count(rec)
	return len(batch), res.unavailable
}

func (r *Relay) count(rec recorded) {
	r.metrics.published.Add(float64(rec.marked))
	r.metrics.refused.Add(float64(rec.refused))
	r.metrics.movedAside.Add(float64(rec.movedAside))
}

// claim reads the next batch: unpublished rows, in order, skipping those
// waiting out a refusal.
func (r *Relay) claim(ctx context.Context, q querier, lockClause string) ([]outboxRow, error) {
	now := nowSQL(r.outbox.db.Dialect)
	rows, err := q.QueryContext(ctx,
		`SELECT seq, event_id, subject, payload, headers, attempts FROM outbox
		 WHERE published_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= `+now+`)
		 ORDER BY seq LIMIT $1`+lockClause, r.batchSize)
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
		if err := rows.Scan(&row.seq, &row.eventID, &row.subject, &row.payload, &headers, &row.attempts); err != nil {
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

// publishBatch publishes batch; its error is the test hook's.
func (r *Relay) publishBatch(ctx context.Context, batch []outboxRow) (published, error) {
	res := r.publish(ctx, batch)
	if r.afterPublish != nil {
		if err := r.afterPublish(); err != nil {
			return published{}, err
		}
	}
	return res, nil
}

// record marks the acknowledged rows published and puts each refused row
// on its backoff, or aside when it has used up its attempts.
func (r *Relay) record(ctx context.Context, q querier, res published) (recorded, error) {
	d := r.outbox.db.Dialect
	rec := recorded{marked: len(res.acked), refused: len(res.refused)}
	if len(res.acked) > 0 {
		_, err := q.ExecContext(ctx,
			`UPDATE outbox SET published_at = `+nowSQL(d)+
				` WHERE seq IN (`+placeholders(1, len(res.acked))+`)`, res.acked...)
		if err != nil {
			return recorded{}, fmt.Errorf("mark %d outbox rows published: %w", len(res.acked), err)
		}
		r.logger.DebugContext(ctx, "outbox events published", "count", len(res.acked))
	}
	for _, f := range res.refused {
		attempts := f.row.attempts + 1
		lastError := truncate(f.err.Error(), maxErrorHeaderBytes)
		log := r.logger.With("event_id", f.row.eventID, "subject", f.row.subject, "attempts", attempts, "error", lastError)
		if attempts >= r.maxAttempts {
			if err := moveAside(ctx, q, f.row.seq, attempts, lastError); err != nil {
				return recorded{}, err
			}
			rec.movedAside++
			log.ErrorContext(ctx, "outbox event moved aside after refused publishes")
			continue
		}
		delay := jitter(r.rowDelay(attempts))
		var wait any = delay.Seconds()
		if d != db.Postgres {
			wait = strconv.FormatFloat(delay.Seconds(), 'f', 3, 64)
		}
		_, err := q.ExecContext(ctx,
			`UPDATE outbox SET attempts = $2, last_error = $3, next_attempt_at = `+afterSecondsSQL(d, "$4")+
				` WHERE seq = $1`, f.row.seq, attempts, lastError, wait)
		if err != nil {
			return recorded{}, fmt.Errorf("put event %s on its backoff: %w", f.row.eventID, err)
		}
		log.WarnContext(ctx, "outbox event refused, will retry", "retry_in", delay)
	}
	return rec, nil
}

// moveAside moves outbox row seq to outbox_dead. A dead row of the same
// event id, possible when an event id was reused after its row died, is
// replaced: the newer row is the one to replay.
func moveAside(ctx context.Context, q querier, seq int64, attempts int, lastError string) error {
	if _, err := q.ExecContext(ctx,
		`DELETE FROM outbox_dead WHERE event_id = (SELECT event_id FROM outbox WHERE seq = $1)`, seq); err != nil {
		return fmt.Errorf("move outbox row %d aside: %w", seq, err)
	}
	if _, err := q.ExecContext(ctx,
		`INSERT INTO outbox_dead (seq, event_id, subject, payload, headers, created_at, attempts, last_error)
		 SELECT seq, event_id, subject, payload, headers, created_at, $2, $3 FROM outbox WHERE seq = $1`,
		seq, attempts, lastError); err != nil {
		return fmt.Errorf("move outbox row %d aside: %w", seq, err)
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM outbox WHERE seq = $1`, seq); err != nil {
		return fmt.Errorf("move outbox row %d aside: %w", seq, err)
	}
	return nil
}

// rowDelay is the backoff after a row's attempts-th refusal, before jitter.
func (r *Relay) rowDelay(attempts int) time.Duration {
	d := r.rowRetryFirst
	for i := 1; i < attempts && d < r.rowRetryLimit; i++ {
		d *= 2
	}
	return min(d, r.rowRetryLimit)
}

// publish sends the whole batch before waiting for any acknowledgement.
// Rows after a failed one are still marked when acknowledged, so that a row
// that keeps failing does not get those behind it stored again on every
// retry. A failure of NATS stops the publishing of the batch; a refusal of
// one row does not.
func (r *Relay) publish(ctx context.Context, batch []outboxRow) (res published) {
	ctx, cancel := context.WithTimeout(ctx, r.publishTimeout)
	defer cancel()
	type inFlight struct {
		row    outboxRow
		future jetstream.PubAckFuture
	}
	sent := make([]inFlight, 0, len(batch))
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
			err = fmt.Errorf("publish event %s to %s: %w", row.eventID, row.subject, err)
			if natsUnavailable(err) {
				res.unavailable = err
				break
			}
			res.refused = append(res.refused, refusal{row: row, err: err})
			continue
		}
		sent = append(sent, inFlight{row: row, future: future})
	}
	res.acked = make([]any, 0, len(sent))
	for _, s := range sent {
		select {
		case ack := <-s.future.Ok():
			res.acked = append(res.acked, s.row.seq)
			if ack.Duplicate {
				r.metrics.duplicates.Inc()
			}
		case err := <-s.future.Err():
			err = fmt.Errorf("publish event %s to %s: %w", s.row.eventID, s.row.subject, err)
			if !natsUnavailable(err) {
				res.refused = append(res.refused, refusal{row: s.row, err: err})
			} else if res.unavailable == nil {
				res.unavailable = err
			}
		case <-ctx.Done():
			// The rest are unknown: republishing them is safe.
			res.unavailable = errors.Join(res.unavailable, fmt.Errorf("wait for ack of event %s: %w", s.row.eventID, ctx.Err()))
			return res
		}
	}
	return res
}

func (r *Relay) updateLag(ctx context.Context) {
	var (
		pending, retrying, dead int64
		age                     float64
	)
	err := r.outbox.db.QueryRowContext(ctx,
		`SELECT count(*), COALESCE(`+ageSecondsSQL(r.outbox.db.Dialect, "min(created_at)")+`, 0),
		        COALESCE(sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0)
		 FROM outbox WHERE published_at IS NULL`).Scan(&pending, &age, &retrying)
	if err == nil {
		err = r.outbox.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox_dead`).Scan(&dead)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.logger.WarnContext(ctx, "outbox lag not measured", "error", err)
		}
		return
	}
	r.metrics.pending.Set(float64(pending))
	r.metrics.oldestAge.Set(max(age, 0))
	r.metrics.retrying.Set(float64(retrying))
	r.metrics.dead.Set(float64(dead))
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
