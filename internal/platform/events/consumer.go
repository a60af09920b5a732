package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
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

const (
	reasonPermanent = "permanent"
	reasonExhausted = "exhausted"

	defaultMaxDeliver         = 5
	defaultAckWait            = 30 * time.Second
	defaultPrefetch           = 8
	defaultProcessedRetention = domainRetention + 24*time.Hour
	processedPruneInterval    = time.Hour
	maxErrorHeaderBytes       = 1024
	deadLetterTimeout         = 10 * time.Second
	tracerName                = "github.com/mercato-dev/mercato/internal/platform/events"
)

var defaultBackoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}

// Message is one delivery of an event to a Handler.
type Message struct {
	// ID is the event id: the Mercato-Event-Id header, else Nats-Msg-Id,
	// else "<stream>:<sequence>" for a message published by other means.
	ID      string
	Subject string
	Payload []byte
	// Attempt is 1 on the first delivery and counts redeliveries.
	Attempt int
	// Header holds the message headers; treat it as read-only.
	Header nats.Header
}

// Handler applies one message inside tx, the transaction that also records
// the message as processed: its effects commit if and only if it returns
// nil, and then a redelivery of the same event is skipped. Returning an
// error rolls tx back and schedules a redelivery; wrap the error with
// Permanent when a redelivery cannot help. ctx carries the producer's trace
// as parent and expires after AckWait. A panic counts as an error.
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
	// MaxDeliver is how many times a failing message is tried before it is
	// dead-lettered. Default 5.
	MaxDeliver int
	// Backoff is the delay before redelivery after the n-th failure; the
	// last value repeats. Default 1s, 5s, 15s, 30s, 1m.
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
// handled by outcome and dead letters by reason, labelled with the consumer
// name. Consumers of one process share them. Nil records nothing.
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
// retry (handler failed: redelivered after Backoff), or dead letter: after
// MaxDeliver failures, or at once for a Permanent error, the message is
// published to "dlq.<subject>" with the Mercato-Dlq-* headers and then
// terminated, so it is never redelivered. If that publish fails the message
// is retried instead: nothing is dropped silently.
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
		// Unlimited on the server: the consumer counts attempts itself and
		// dead-letters, whereas the server would silently stop delivering a
		// message whose last attempt crashed.
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

	if msg.Attempt > c.cfg.MaxDeliver {
		// The previous attempt, the last allowed, never finished (a crash, a
		// failed dead-letter publish): give up without running the handler.
		err := fmt.Errorf("no outcome after %d deliveries", c.cfg.MaxDeliver)
		c.deadLetter(ctx, log, span, m, meta, msg, reasonExhausted, err)
		return
	}
	// Past AckWait the message is redelivered anyway, so the handler's
	// work is bounded by it.
	handlerCtx, cancel := context.WithTimeout(ctx, c.cfg.AckWait)
	duplicate, err := c.process(handlerCtx, msg)
	cancel()
	switch {
	case err == nil:
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
	case IsPermanent(err):
		span.RecordError(err)
		c.deadLetter(ctx, log, span, m, meta, msg, reasonPermanent, err)
	case msg.Attempt >= c.cfg.MaxDeliver:
		span.RecordError(err)
		c.deadLetter(ctx, log, span, m, meta, msg, reasonExhausted, err)
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, "handler failed, will retry")
		c.retry(ctx, log, m, msg, err)
	}
}

// process runs the handler in a transaction that first claims the event id
// in processed_events. Claiming first, rather than checking, makes a
// concurrent delivery of the same event wait on the row (PostgreSQL) or the
// write lock (SQLite) and then see it as a duplicate.
func (c *Consumer) process(ctx context.Context, msg Message) (duplicate bool, err error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin handling event %s: %w", msg.ID, err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx,
		`INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
		 ON CONFLICT (consumer, event_id) DO NOTHING`, c.cfg.Name, msg.ID)
	if err != nil {
		return false, fmt.Errorf("record event %s as processed: %w", msg.ID, err)
	}
	claimed, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record event %s as processed: %w", msg.ID, err)
	}
	if claimed == 0 {
		return true, nil
	}
	if err := c.callHandler(ctx, tx, msg); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit event %s: %w", msg.ID, err)
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

func (c *Consumer) retry(ctx context.Context, log *slog.Logger, m jetstream.Msg, msg Message, cause error) {
	delay := c.cfg.Backoff[min(msg.Attempt, len(c.cfg.Backoff))-1]
	log.WarnContext(ctx, "event handler failed, will retry", "error", cause, "retry_in", delay)
	if err := m.NakWithDelay(delay); err != nil {
		// The server redelivers after AckWait instead.
		log.WarnContext(ctx, "event negative acknowledgement failed", "error", err)
	}
	c.metrics.handled.WithLabelValues(c.cfg.Name, OutcomeRetry).Inc()
}

func (c *Consumer) deadLetter(ctx context.Context, log *slog.Logger, span trace.Span, m jetstream.Msg, meta *jetstream.MsgMetadata, msg Message, reason string, cause error) {
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
	dl.Header.Set(HeaderDeadLetterAttempts, strconv.Itoa(msg.Attempt))
	// One id per original stream message and consumer: a retried
	// dead-lettering is dropped as a duplicate, a replayed copy is not.
	dlID := c.cfg.Name + ":" + meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	if _, err := c.js.PublishMsg(ctx, dl, jetstream.WithMsgID(dlID)); err != nil {
		log.ErrorContext(ctx, "dead letter not published, will retry", "error", err, "cause", cause)
		c.retry(ctx, log, m, msg, cause)
		return
	}
	if err := m.TermWithReason("dead-lettered: " + reason); err != nil {
		// A redelivery is dead-lettered again, and the copy dropped.
		log.WarnContext(ctx, "dead-lettered event not terminated", "error", err)
	}
	log.ErrorContext(ctx, "event dead-lettered", "reason", reason, "error", cause)
	c.metrics.handled.WithLabelValues(c.cfg.Name, OutcomeDeadLetter).Inc()
	c.metrics.deadLetters.WithLabelValues(c.cfg.Name, reason).Inc()
}

// pruneProcessed deletes this consumer's processed_events rows older than
// the retention, now and then every hour, until ctx is done.
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
	if len(s) <= maxErrorHeaderBytes {
		return s
	}
	cut := maxErrorHeaderBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
