package app

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of ReserveStock, the values of the outcome label.
const (
	OutcomeReserved    = "reserved"
	OutcomeReplayed    = "replayed"
	OutcomeOutOfStock  = "out_of_stock"
	OutcomeLinesDiffer = "lines_differ"
)

// Metrics counts what the inventory decides. A nil *Metrics counts nothing.
type Metrics struct {
	reservations *prometheus.CounterVec
	expired      prometheus.Counter
}

// NewMetrics registers the inventory's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "inventory", Name: "reservations_total",
			Help: "ReserveStock calls by outcome: reserved, replayed (the order already had one), out_of_stock, lines_differ.",
		}, []string{"outcome"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "inventory", Name: "reservations_expired_total",
			Help: "Reservations released because they passed their expiry before being committed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.reservations, m.expired} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, o := range []string{OutcomeReserved, OutcomeReplayed, OutcomeOutOfStock, OutcomeLinesDiffer} {
		m.reservations.WithLabelValues(o)
	}
	return m, nil
}

func (m *Metrics) reservation(outcome string) {
	if m != nil {
		m.reservations.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) expiredReservation() {
	if m != nil {
		m.expired.Inc()
	}
}
