package events

// WithAfterPublishHook runs fn after each batch is published and before it
// is marked; an error from fn skips the marking, as a crash there would.
func WithAfterPublishHook(fn func() error) RelayOption {
	return func(r *Relay) { r.afterPublish = fn }
}

// NATSUnavailable tells the relay's two kinds of publish failure apart:
// NATS unavailable (true) or the row refused (false).
var NATSUnavailable = natsUnavailable
