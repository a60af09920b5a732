package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

// Headers a dead letter carries besides the original ones (HeaderEventID,
// the trace context): who gave up on it, why, and where it came from. The
// original subject is the dead letter's subject without the "dlq." prefix.
const (
	HeaderDeadLetterConsumer = "Mercato-Dlq-Consumer"
	HeaderDeadLetterError    = "Mercato-Dlq-Error"
	HeaderDeadLetterReason   = "Mercato-Dlq-Reason" // "permanent" or "exhausted"
	HeaderDeadLetterStream   = "Mercato-Dlq-Stream"
	HeaderDeadLetterSequence = "Mercato-Dlq-Sequence" // stream sequence of the original message
	HeaderDeadLetterAttempts = "Mercato-Dlq-Attempts"
)

// Why a message was dead-lettered (the reason label and the
// Mercato-Dlq-Reason header), and why one was retried (the reason label of
// the retries metric).
const (
	reasonPermanent      = "permanent"
	reasonExhausted      = "exhausted"
	reasonInfrastructure = "infrastructure"
	reasonRejected       = "rejected"
)

const (
	defaultMaxDeliver         = 5
	defaultAckWait            = 30 * time.Second
	defaultPrefetch           = 8
	defaultProcessedRetention = domainRetention + 24*time.Hour
	processedPruneInterval    = time.Hour
	maxErrorHeaderBytes       = 1024
	deadLetterTimeout         = 10 * time.Second
	// rejectionTimeout bounds the write that counts a rejection; the
	// handler may have used up AckWait.
	rejectionTimeout = 5 * time.Second
	tracerName       = "github.com/mercato-dev/mercato/internal/platform/events"
)

// defaultBackoff doubles from one second to five minutes: a database
// outage of a few minutes costs a handful of redeliveries per message, and
// a message comes back within five minutes of the database.
var defaultBackoff = doubling(time.Second, 5*time.Minute)

// doubling returns first, 2*first, ... up to and ending with limit.
func doubling(first, limit time.Duration) []time.Duration {
	var ds []time.Duration
	for d := first; d < limit; d *= 2 {
		ds = append(ds, d)
	}
	return append(ds, limit)
}

// jitter draws a delay uniformly between half of d and d, so that messages
// that failed together (all of them, in a database outage) do not all come
// back at the same moment.
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}

// Message is one delivery of an event to a Handler.
type Message struct {
	// ID is the event id: the Mercato-Event-Id header, else Nats-Msg-Id,
	// else "<stream>:<sequence>" for a message published by other means.
	ID      string
	Subject string
	Payload []byte
	// Attempt is JetStream's delivery count: 1 on the first delivery, then
	// counting every redelivery, whatever the previous one failed of. It is
	// not what MaxDeliver limits (see Handler).
	Attempt int
	// Header holds the message headers; treat it as read-only.
	Header nats.Header
}

// Handler applies one message inside tx, the transaction that also records
// the message as processed: its effects commit if and only if it returns
// nil, and then a redelivery of the same event is skipped. ctx carries the
// producer's trace as parent and expires after AckWait.
//
// Returning an error rolls tx back and schedules a redelivery after a
// backoff. What else happens depends on the error, tested in this order:
//
//   - marked with Infrastructure: the message is not at fault, so the
//     attempt is not counted and the message is retried for as long as the
//     failure lasts; it is never dead-lettered for it;
//   - marked with Permanent: the message goes to the dead-letter stream at
//     once;
//   - IsInfrastructure (the database unavailable: connection refused or
//     lost, server shutting down, busy, locked, deadlock, serialization
//     failure; a context deadline, AckWait running out included; NATS
//     unreachable): as marked with Infrastructure;
//   - anything else, a panic included, is a rejection of the message:
//     counted, and the MaxDeliver-th rejection dead-letters it.
//
// The consumer's own work in the database (beginning tx, recording the
// event as processed, committing, unless the commit fails on a constraint)
// fails as infrastructure. Rejections are counted in the consumer's
// database, so a count survives a restart; while that database is
// unavailable nothing is counted, and a message failing then is retried as
// for infrastructure. A handler calling another service should mark that
// service being unreachable with Infrastructure, and its own timeouts as it
// sees fit (a deadline passes as infrastructure unless marked Permanent).
//
// Retried indefinitely, a message whose handler crashes the process, or
// always runs out of AckWait, is never dead-lettered: watch the retries
// metric by reason.
type Handler func(ctx context.Context, tx *sql.Tx, msg Message) error

// ConsumerConfig describes a durable JetStream consumer.
type ConsumerConfig struct {
	// Name is the durable consumer name, unique per consuming service and
	// purpose (for example "notifications-order-emails"); it also scopes
	// the processed_events rows. Letters, digits, '-' and '_'.
	Name string
	// Stream is the stream to read ("ORDERS", ...). Empty means the
	// stream bound to Subjects[0], which is how services find the streams
	// other services own.
	Stream string
	// Subjects filters the stream, wildcards allowed ("order.>").
	Subjects []string
	// MaxDeliver is how many times the handler may reject a message (see
	// Handler) before it is dead-lettered; infrastructure failures do not
	// count. Default 5.
	MaxDeliver int
	// Backoff is the delay before the redelivery that follows the n-th
	// failed delivery, whatever it failed of; the last value repeats. Each
	// delay is drawn between half of it and all of it. Default 1s doubling
	// to 5m (1s, 2s, 4s, ... 256s, 5m).
	Backoff []time.Duration
	// AckWait is how long a handler may take before the message is
	// redelivered, and its context's deadline. Default 30s.
	AckWait time.Duration
}

// Validate reports every problem with the configuration at once, each
// wrapping ErrInvalidConfig.
func (c ConsumerConfig) Validate() error {
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: consumer %q: %s", ErrInvalidConfig, c.Name, fmt.Sprintf(format, args...)))
	}
	if !validConsumerName(c.Name) {
		problem("name must be 1 to 64 letters, digits, '-' or '_'")
	}
	if len(c.Subjects) == 0 {
		problem("no subjects")
	}
	for _, s := range c.Subjects {
		if !validSubject(s, true) {
			problem("subject %q is not a NATS subject", s)
		}
	}
	if c.MaxDeliver < 0 {
		problem("max deliver %d is negative", c.MaxDeliver)
	}
	for _, d := range c.Backoff {
		if d <= 0 {
			problem("backoff %s is not positive", d)
		}
	}
	if c.AckWait < 0 {
		problem("ack wait %s is negative", c.AckWait)
	}
	return errors.Join(errs...)
}

func validConsumerName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if r > unicode.MaxASCII || (!unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_') {
			return false
		}
	}
	return true
}

// Consumer feeds the messages of one durable JetStream consumer to a
// Handler, effectively once per event id.
type Consumer struct {
	db                 *db.DB
	js                 jetstream.JetStream
	logger             *slog.Logger
	cfg                ConsumerConfig
	handler            Handler
	registerer         prometheus.Registerer
	metrics            *consumerMetrics
	tracerProvider     trace.TracerProvider
	tracer             trace.Tracer
	propagator         propagation.TextMapPropagator
	processedRetention time.Duration
	prefetch           int
}

// ConsumerOption configures a Consumer.
type ConsumerOption func(*Consumer)

// WithConsumerMetrics registers the consumer's metrics on reg: messages
// handled by outcome, retries by reason (infrastructure, rejected) and dead
// letters by reason, labelled with the consumer name. Consumers of one
// process share them. Nil records nothing.
func WithConsumerMetrics(reg prometheus.Registerer) ConsumerOption {
	return func(c *Consumer) { c.registerer = reg }
}

// WithTracerProvider sets where handler spans go (default: otel's global
// provider).
func WithTracerProvider(tp trace.TracerProvider) ConsumerOption {
	return func(c *Consumer) { c.tracerProvider = tp }
}

// WithConsumerPropagator sets how trace context is read from message
// headers (default: W3C trace context and baggage).
func WithConsumerPropagator(p propagation.TextMapPropagator) ConsumerOption {
	return func(c *Consumer) { c.propagator = p }
}

// WithProcessedRetention sets how long processed_events rows are kept
// (default 8 days, longer than the streams keep messages, so no redelivery
// can outlive its row). A negative value keeps them forever.
func WithProcessedRetention(d time.Duration) ConsumerOption {
	return func(c *Consumer) {
		if d != 0 {
			c.processedRetention = d
		}
	}
}

// WithPrefetch sets how many messages are pulled ahead of the one being
// handled (default 8). Prefetched messages wait in turn, and their AckWait
// runs meanwhile: lower it for slow handlers.
func WithPrefetch(n int) ConsumerOption {
	return func(c *Consumer) {
		if n > 0 {
			c.prefetch = n
		}
	}
}

// NewConsumer checks cfg and returns a consumer that will run h on the
// messages of d's service; d must have the schema of EnsureSchema. A nil
// logger discards logs. Nothing touches NATS before Run.
func NewConsumer(d *db.DB, js jetstream.JetStream, logger *slog.Logger, cfg ConsumerConfig, h Handler, opts ...ConsumerOption) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%w: consumer %q: nil handler", ErrInvalidConfig, cfg.Name)
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = defaultMaxDeliver
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = defaultBackoff
	}
	cfg.Backoff = slices.Clone(cfg.Backoff)
	cfg.Subjects = slices.Clone(cfg.Subjects)
	if cfg.AckWait == 0 {
		cfg.AckWait = defaultAckWait
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{
		db:                 d,
		js:                 js,
		logger:             logger.With("consumer", cfg.Name),
		cfg:                cfg,
		handler:            h,
		propagator:         defaultPropagator(),
		processedRetention: defaultProcessedRetention,
		prefetch:           defaultPrefetch,
	}
	for _, opt := range opts {
		opt(c)
	}
	metrics, err := newConsumerMetrics(c.registerer)
	if err != nil {
		return nil, err
	}
	c.metrics = metrics
	if c.tracerProvider == nil {
		c.tracerProvider = otel.GetTracerProvider()
	}
	c.tracer = c.tracerProvider.Tracer(tracerName)
	return c, nil
}

// Run creates or updates the durable consumer and handles its messages one
// at a time until ctx is cancelled; then it stops pulling, lets the message
// in hand and those already pulled finish, and returns nil. It returns an
// error if the consumer cannot be set up or consuming stops by itself (the
// consumer was deleted, the connection closed). Call Run once per Consumer.
//
// Each delivery ends in one of four ways: ok (handled, acknowledged),
// duplicate (already processed, acknowledged without running the handler),
// retry (redelivered after Backoff: an infrastructure failure, or a
// rejection short of MaxDeliver), or dead letter: at the MaxDeliver-th
// rejection, or at once for a Permanent error, the message is published to
// "dlq.<subject>" with the Mercato-Dlq-* headers and then terminated, so it
// is never redelivered. If that publish fails the message is retried
// instead: nothing is dropped silently.
func (c *Consumer) Run(ctx context.Context) error {
	stream := c.cfg.Stream
	if stream == "" {
		name, err := c.js.StreamNameBySubject(ctx, c.cfg.Subjects[0])
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find stream for consumer %s: %w", c.cfg.Name, err)
		}
		stream = name
	}
	consumer, err := c.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:        c.cfg.Name,
		FilterSubjects: c.cfg.Subjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		// Unlimited on the server: the consumer counts rejections itself and
		// dead-letters, whereas the server counts every delivery (those
		// failing for a database outage too) and would silently stop
		// delivering a message past its limit.
		MaxDeliver: -1,
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create consumer %s on stream %s: %w", c.cfg.Name, stream, err)
	}

	var (
		mu      sync.Mutex
		pullErr error
	)
	// Handlers get a context that outlives ctx, so that a stop lets the
	// message in hand commit instead of rolling it back.
	handleCtx := context.WithoutCancel(ctx)
	consuming, err := consumer.Consume(
		func(m jetstream.Msg) { c.handle(handleCtx, m) },
		jetstream.PullMaxMessages(c.prefetch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if ctx.Err() != nil {
				return
			}
			c.logger.WarnContext(ctx, "consumer pull failed", "error", err)
			mu.Lock()
			pullErr = err
			mu.Unlock()
		}),
	)
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Name, err)
	}

	pruneCtx, stopPruning := context.WithCancel(ctx)
	var pruning sync.WaitGroup
	pruning.Go(func() { c.pruneProcessed(pruneCtx) })
	defer pruning.Wait()
	defer stopPruning()

	closed := consuming.Closed()
	select {
	case <-ctx.Done():
		consuming.Drain()
		<-closed
		return nil
	case <-closed:
		mu.Lock()
		defer mu.Unlock()
		if pullErr == nil {
			pullErr = errors.New("subscription closed")
		}
		return fmt.Errorf("consumer %s stopped: %w", c.cfg.Name, pullErr)
	}
}

// handle runs one delivery to its end: acknowledged, scheduled for
// redelivery, or dead-lettered.
func (c *Consumer) handle(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery; it cannot be acknowledged either.
		c.logger.ErrorContext(ctx, "consumer received a message without metadata", "subject", m.Subject(), "error", err)
		return
	}
	header := m.Headers()
	msg := Message{
		ID:      eventID(header, meta),
		Subject: m.Subject(),
		Payload: m.Data(),
		Attempt: int(meta.NumDelivered),
		Header:  header,
	}
	ctx = c.propagator.Extract(ctx, headerCarrier(header))
	ctx, span := c.tracer.Start(ctx, "process "+msg.Subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(msg.Subject),
			semconv.MessagingConsumerGroupName(c.cfg.Name),
			semconv.MessagingMessageID(msg.ID),
			attribute.Int("mercato.events.attempt", msg.Attempt),
		))
	defer span.End()
	log := c.logger.With("event_id", msg.ID, "subject", msg.Subject, "attempt", msg.Attempt)

	// Past AckWait the message is redelivered anyway, so the handler's
	// work is bounded by it.
	handlerCtx, cancel := context.WithTimeout(ctx, c.cfg.AckWait)
	duplicate, err := c.process(handlerCtx, meta, msg)
	expired := handlerCtx.Err() != nil
	cancel()
	if err == nil {
		outcome := OutcomeOK
		if duplicate {
			outcome = OutcomeDuplicate
			log.DebugContext(ctx, "duplicate event skipped")
		}
		if ackErr := m.Ack(); ackErr != nil {
			// Harmless: the redelivery will be recognised as a duplicate.
			log.WarnContext(ctx, "event acknowledgement failed", "error", ackErr)
		}
		c.metrics.handled.WithLabelValues(c.cfg.Name, outcome).Inc()
		return
	}
	span.RecordError(err)
	kind := classify(err, expired)
	if kind == reasonInfrastructure {
		span.SetStatus(codes.Error, "infrastructure failure, will retry")
		c.retry(ctx, log, m, msg, reasonInfrastructure, err)
		return
	}
	rejections, countErr := c.countRejection(ctx, meta, msg, err)
	switch {
	case kind == reasonPermanent:
		if countErr != nil {
			log.WarnContext(ctx, "rejection not counted", "error", countErr)
			rejections = 1
		}
		c.deadLetter(ctx, log, span, m, meta, msg, reasonPermanent, rejections, err)
	case countErr != nil:
		// The database that counts rejections is unavailable too: an
		// uncounted failure is one of infrastructure.
		log.WarnContext(ctx, "rejection not counted, will retry", "error", countErr)
		span.SetStatus(codes.Error, "rejection not counted, will retry")
		c.retry(ctx, log, m, msg, reasonInfrastructure, err)
	case rejections >= c.cfg.MaxDeliver:
		c.deadLetter(ctx, log, span, m, meta, msg, reasonExhausted, rejections, err)
	default:
		span.SetStatus(codes.Error, "handler rejected the event, will retry")
		c.retry(ctx, log.With("rejections", rejections), m, msg, reasonRejected, err)
	}
}

// classify tells what a handling failure was: infrastructure, permanent or
// rejected, in the order the Handler contract gives. expired says the
// handler's context ran out meanwhile.
func classify(err error, expired bool) string {
	var infra *infrastructureError
	switch {
	case errors.As(err, &infra):
		return reasonInfrastructure
	case IsPermanent(err):
		return reasonPermanent
	case expired || IsInfrastructure(err):
		return reasonInfrastructure
	default:
		return reasonRejected
	}
}

// countRejection adds one to the rejections of this stream message and
// returns the new count. It is keyed by stream message rather than event id
// so that a replayed dead letter, a new stream message, starts from zero;
// the event id is kept to tell a stream that was recreated (and numbers its
// messages from 1 again) from the same message.
func (c *Consumer) countRejection(ctx context.Context, meta *jetstream.MsgMetadata, msg Message, cause error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, rejectionTimeout)
	defer cancel()
	now := nowSQL(c.db.Dialect)
	var n int
	err := c.db.QueryRowContext(ctx,
		`INSERT INTO consumer_rejections (consumer, stream, stream_seq, event_id, rejections, last_error, rejected_at)
		 VALUES ($1, $2, $3, $4, 1, $5, `+now+`)
		 ON CONFLICT (consumer, stream, stream_seq) DO UPDATE SET
		   rejections = CASE WHEN consumer_rejections.event_id = excluded.event_id
		                     THEN consumer_rejections.rejections + 1 ELSE 1 END,
		   event_id = excluded.event_id, last_error = excluded.last_error, rejected_at = excluded.rejected_at
		 RETURNING rejections`,
		c.cfg.Name, meta.Stream, int64(meta.Sequence.Stream), msg.ID, truncate(cause.Error(), maxErrorHeaderBytes),
	).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count rejection of event %s: %w", msg.ID, err)
	}
	return n, nil
}

// forgetRejections deletes the count of a message that is done with
// (dead-lettered); a failure only leaves a row for pruning.
func (c *Consumer) forgetRejections(ctx context.Context, log *slog.Logger, meta *jetstream.MsgMetadata) {
	ctx, cancel := context.WithTimeout(ctx, rejectionTimeout)
	defer cancel()
	_, err := c.db.ExecContext(ctx, deleteRejectionsSQL, c.cfg.Name, meta.Stream, int64(meta.Sequence.Stream))
	if err != nil {
		log.WarnContext(ctx, "rejection count not deleted", "error", err)
	}
}

const deleteRejectionsSQL = `DELETE FROM consumer_rejections WHERE consumer = $1 AND stream = $2 AND stream_seq = $3`

// process runs the handler in a transaction that first claims the event id
// in processed_events. Claiming first, rather than checking, makes a
// concurrent delivery of the same event wait on the row (PostgreSQL) or the
// write lock (SQLite) and then see it as a duplicate.
//
// Its own statements fail as infrastructure: the message is not at fault.
func (c *Consumer) process(ctx context.Context, meta *jetstream.MsgMetadata, msg Message) (duplicate bool, err error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return false, Infrastructure(fmt.Errorf("begin handling event %s: %w", msg.ID, err))
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx,
		`INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
		 ON CONFLICT (consumer, event_id) DO NOTHING`, c.cfg.Name, msg.ID)
	if err != nil {
		return false, Infrastructure(fmt.Errorf("record event %s as processed: %w", msg.ID, err))
	}
	claimed, err := res.RowsAffected()
	if err != nil {
		return false, Infrastructure(fmt.Errorf("record event %s as processed: %w", msg.ID, err))
	}
	if claimed == 0 {
		return true, nil
	}
	if err := c.callHandler(ctx, tx, msg); err != nil {
		return false, err
	}
	if msg.Attempt > 1 {
		// Earlier deliveries may have counted rejections; only a
		// redelivery can have any.
		if _, err := tx.ExecContext(ctx, deleteRejectionsSQL, c.cfg.Name, meta.Stream, int64(meta.Sequence.Stream)); err != nil {
			return false, Infrastructure(fmt.Errorf("clear rejections of event %s: %w", msg.ID, err))
		}
	}
	if err := tx.Commit(); err != nil {
		err = fmt.Errorf("commit event %s: %w", msg.ID, err)
		// A deferred constraint the handler's writes broke is the
		// handler's; anything else at commit is the database's.
		if db.IsConstraintViolation(err) {
			return false, err
		}
		return false, Infrastructure(err)
	}
	return false, nil
}

func (c *Consumer) callHandler(ctx context.Context, tx *sql.Tx, msg Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.logger.ErrorContext(ctx, "event handler panicked", "event_id", msg.ID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return c.handler(ctx, tx, msg)
}

// retry has the message redelivered after the backoff of its delivery
// count. reason is infrastructure or rejected.
func (c *Consumer) retry(ctx context.Context, log *slog.Logger, m jetstream.Msg, msg Message, reason string, cause error) {
	delay := jitter(c.cfg.Backoff[min(msg.Attempt, len(c.cfg.Backoff))-1])
	log.WarnContext(ctx, "event handling failed, will retry", "reason", reason, "error", cause, "retry_in", delay)
	if err := m.NakWithDelay(delay); err != nil {
		// The server redelivers after AckWait instead.
		log.WarnContext(ctx, "event negative acknowledgement failed", "error", err)
	}
	c.metrics.handled.WithLabelValues(c.cfg.Name, OutcomeRetry).Inc()
	c.metrics.retries.WithLabelValues(c.cfg.Name, reason).Inc()
}

// deadLetter publishes the message to the dead-letter stream and
// terminates it; rejections is how many times the handler rejected it.
func (c *Consumer) deadLetter(ctx context.Context, log *slog.Logger, span trace.Span, m jetstream.Msg, meta *jetstream.MsgMetadata, msg Message, reason string, rejections int, cause error) {
	span.SetStatus(codes.Error, "dead-lettered")
	// Its own deadline: the handler may have used up AckWait.
	ctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
	defer cancel()
	dl := nats.NewMsg(deadLetterPrefix + msg.Subject)
	dl.Data = msg.Payload
	for k, vs := range msg.Header {
		// Nats-* headers belong to the original publish; Nats-Msg-Id in
		// particular would make the stream drop the dead letter.
		if !strings.HasPrefix(k, "Nats-") {
			dl.Header[k] = slices.Clone(vs)
		}
	}
	dl.Header.Set(HeaderEventID, msg.ID)
	dl.Header.Set(HeaderDeadLetterConsumer, c.cfg.Name)
	dl.Header.Set(HeaderDeadLetterError, headerSafe(cause.Error()))
	dl.Header.Set(HeaderDeadLetterReason, reason)
	dl.Header.Set(HeaderDeadLetterStream, meta.Stream)
	dl.Header.Set(HeaderDeadLetterSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
	dl.Header.Set(HeaderDeadLetterAttempts, strconv.Itoa(rejections))
	// One id per original stream message and consumer: a retried
	// dead-lettering is dropped as a duplicate, a replayed copy is not.
	dlID := c.cfg.Name + ":" + meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	if _, err := c.js.PublishMsg(ctx, dl, jetstream.WithMsgID(dlID)); err != nil {
		log.ErrorContext(ctx, "dead letter not published, will retry", "error", err, "cause", cause)
		c.retry(ctx, log, m, msg, reasonInfrastructure, cause)
		return
	}
	terminated := true
	if err := m.TermWithReason("dead-lettered: " + reason); err != nil {
		// A redelivery is dead-lettered again, and the copy dropped; it
		// needs its count for that.
		log.WarnContext(ctx, "dead-lettered event not terminated", "error", err)
		terminated = false
	}
	c.metrics.handled.WithLabelValues(c.cfg.Name, OutcomeDeadLetter).Inc()
	c.metrics.deadLetters.WithLabelValues(c.cfg.Name, reason).Inc()
	log.ErrorContext(ctx, "event dead-lettered", "reason", reason, "rejections", rejections, "error", cause)
	if terminated {
		c.forgetRejections(ctx, log, meta)
	}
}

// pruneProcessed deletes this consumer's processed_events rows, and the
// rejection counts of messages it never finished with (the stream dropped
// them), older than the retention, now and then every hour, until ctx is
// done.
func (c *Consumer) pruneProcessed(ctx context.Context) {
	if c.processedRetention < 0 {
		return
	}
	ticker := time.NewTicker(processedPruneInterval)
	defer ticker.Stop()
	for {
		_, err := c.db.ExecContext(ctx,
			`DELETE FROM processed_events WHERE consumer = $1 AND `+olderThanSQL(c.db.Dialect, "processed_at", "$2"),
			c.cfg.Name, int64(c.processedRetention/time.Second))
		if err != nil && ctx.Err() == nil {
			c.logger.WarnContext(ctx, "processed events not pruned", "error", err)
		}
		_, err = c.db.ExecContext(ctx,
			`DELETE FROM consumer_rejections WHERE consumer = $1 AND `+olderThanSQL(c.db.Dialect, "rejected_at", "$2"),
			c.cfg.Name, int64(c.processedRetention/time.Second))
		if err != nil && ctx.Err() == nil {
			c.logger.WarnContext(ctx, "rejection counts not pruned", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func eventID(h nats.Header, meta *jetstream.MsgMetadata) string {
	if id := h.Get(HeaderEventID); id != "" {
		return id
	}
	if id := h.Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	return meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
}

// headerSafe makes s a valid NATS header value: control characters such as
// newlines would corrupt the header block, and size is bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(s, maxErrorHeaderBytes)
}

// truncate cuts s to at most n bytes, on a character boundary, marking the
// cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
