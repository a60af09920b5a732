package events

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one delivery to a Consumer, the values of the outcome label.
const (
	OutcomeOK         = "ok"
	OutcomeDuplicate  = "duplicate"
	OutcomeRetry      = "retry"
	OutcomeDeadLetter = "dead_letter"
)

type relayMetrics struct {
	pending       prometheus.Gauge
	oldestAge     prometheus.Gauge
	retrying      prometheus.Gauge
	dead          prometheus.Gauge
	published     prometheus.Counter
	duplicates    prometheus.Counter
	publishErrors prometheus.Counter
	refused       prometheus.Counter
	movedAside    prometheus.Counter
}

func newRelayMetrics(reg prometheus.Registerer) (*relayMetrics, error) {
	m := &relayMetrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "events", Name: "outbox_pending",
			Help: "Outbox rows committed but not yet published: the relay's backlog, rows waiting out a retry included.",
		}),
		retrying: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "events", Name: "outbox_retrying",
			Help: "Pending outbox rows whose publish JetStream refused at least once, retried on their own backoff.",
		}),
		dead: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "events", Name: "outbox_dead",
			Help: "Outbox rows moved aside to outbox_dead after too many refused publishes, waiting for a replay.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "events", Name: "outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest unpublished outbox row, 0 when there is none.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "published_total",
			Help: "Outbox events acknowledged by JetStream and marked published.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "publish_duplicates_total",
			Help: "Publishes JetStream dropped as duplicates (a republish after a crash or by a second relay).",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "publish_errors_total",
			Help: "Outbox batches that failed for NATS or the database, and will be retried after the relay backs off.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "outbox_refused_total",
			Help: "Publishes of one outbox row JetStream refused (no stream for its subject, too large, ...), each retried on the row's own backoff.",
		}),
		movedAside: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "outbox_moved_aside_total",
			Help: "Outbox rows moved aside to outbox_dead after too many refused publishes.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.pending, err = register(reg, m.pending); err != nil {
		return nil, err
	}
	if m.oldestAge, err = register(reg, m.oldestAge); err != nil {
		return nil, err
	}
	if m.published, err = register(reg, m.published); err != nil {
		return nil, err
	}
	if m.duplicates, err = register(reg, m.duplicates); err != nil {
		return nil, err
	}
	if m.publishErrors, err = register(reg, m.publishErrors); err != nil {
		return nil, err
	}
	if m.retrying, err = register(reg, m.retrying); err != nil {
		return nil, err
	}
	if m.dead, err = register(reg, m.dead); err != nil {
		return nil, err
	}
	if m.refused, err = register(reg, m.refused); err != nil {
		return nil, err
	}
	if m.movedAside, err = register(reg, m.movedAside); err != nil {
		return nil, err
	}
	return m, nil
}

type consumerMetrics struct {
	handled     *prometheus.CounterVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
}

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	m := &consumerMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "consumer_messages_total",
			Help: "Deliveries handled by a consumer, by outcome (ok, duplicate, retry, dead_letter).",
		}, []string{"consumer", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "consumer_retries_total",
			Help: "Deliveries a consumer scheduled again, by reason: infrastructure (not counted toward MaxDeliver) or rejected (by the handler).",
		}, []string{"consumer", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "events", Name: "dead_letters_total",
			Help: "Messages a consumer moved to the dead-letter stream, by reason (permanent, exhausted).",
		}, []string{"consumer", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.handled, err = register(reg, m.handled); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.deadLetters, err = register(reg, m.deadLetters); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector registered
// before, so that several consumers (or relays) in one process share their
// metrics instead of failing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register events metrics: %w", err)
}
