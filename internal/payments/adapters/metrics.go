package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// Outcomes of a provider call, as labelled in mercato_payments_provider_calls_total.
const (
	OutcomeApproved    = "approved"    // authorization approved
	OutcomeDeclined    = "declined"    // authorization declined
	OutcomeOK          = "ok"          // capture, void, refund or token check done
	OutcomeRejected    = "rejected"    // refused outright (unknown token)
	OutcomeUnavailable = "unavailable" // provider down or failing
	OutcomeCancelled   = "cancelled"   // the caller gave up (deadline, cancel)
	OutcomeError       = "error"       // anything else
)

// Metrics are the payments service's own Prometheus metrics:
//
//   - mercato_payments_provider_calls_total{operation, outcome}
//   - mercato_payments_provider_call_duration_seconds{operation}
//   - mercato_payments_status_transitions_total{from, to}
//
// It is safe for concurrent use.
type Metrics struct {
	providerCalls    *prometheus.CounterVec
	providerDuration *prometheus.HistogramVec
	transitions      *prometheus.CounterVec
}

var _ app.TransitionRecorder = (*Metrics)(nil)

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "payments", Name: "provider_calls_total",
			Help: "Calls to the card provider by operation and outcome.",
		}, []string{"operation", "outcome"}),
		providerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mercato", Subsystem: "payments", Name: "provider_call_duration_seconds",
			Help:    "Duration of calls to the card provider by operation.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "payments", Name: "status_transitions_total",
			Help: "Payment status changes recorded, by the status left and the status reached.",
		}, []string{"from", "to"}),
	}
	for _, c := range []prometheus.Collector{m.providerCalls, m.providerDuration, m.transitions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register payments metrics: %w", err)
		}
	}
	return m, nil
}

// Transition implements app.TransitionRecorder.
func (m *Metrics) Transition(from, to domain.Status) {
	m.transitions.WithLabelValues(string(from), string(to)).Inc()
}

// InstrumentProvider returns p counting every call and its outcome.
func (m *Metrics) InstrumentProvider(p app.Provider) app.Provider {
	return instrumentedProvider{next: p, m: m}
}

type instrumentedProvider struct {
	next app.Provider
	m    *Metrics
}

func (i instrumentedProvider) Authorize(ctx context.Context, req app.ProviderAuthorization) (app.ProviderResult, error) {
	start := time.Now()
	res, err := i.next.Authorize(ctx, req)
	outcome := OutcomeApproved
	if err == nil && !res.Approved {
		outcome = OutcomeDeclined
	}
	i.observe(OpAuthorize, start, outcome, err)
	return res, err
}

func (i instrumentedProvider) Capture(ctx context.Context, reference, key string) error {
	start := time.Now()
	err := i.next.Capture(ctx, reference, key)
	i.observe(OpCapture, start, OutcomeOK, err)
	return err
}

func (i instrumentedProvider) Void(ctx context.Context, reference, key string) error {
	start := time.Now()
	err := i.next.Void(ctx, reference, key)
	i.observe(OpVoid, start, OutcomeOK, err)
	return err
}

func (i instrumentedProvider) Refund(ctx context.Context, reference, key string) error {
	start := time.Now()
	err := i.next.Refund(ctx, reference, key)
	i.observe(OpRefund, start, OutcomeOK, err)
	return err
}

func (i instrumentedProvider) CheckToken(ctx context.Context, token string) (app.ProviderPaymentMethod, error) {
	start := time.Now()
	m, err := i.next.CheckToken(ctx, token)
	i.observe(OpCheckToken, start, OutcomeOK, err)
	return m, err
}

func (i instrumentedProvider) observe(op string, start time.Time, success string, err error) {
	i.m.providerDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	outcome := success
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		outcome = OutcomeCancelled
	case apperr.KindOf(err) == apperr.Invalid:
		outcome = OutcomeRejected
	case apperr.KindOf(err) == apperr.Unavailable:
		outcome = OutcomeUnavailable
	default:
		outcome = OutcomeError
	}
	i.m.providerCalls.WithLabelValues(op, outcome).Inc()
}
