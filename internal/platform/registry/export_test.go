package registry

// RegistrationState tells a test which lease an etcd registration holds and
// whether its keep-alives currently reach etcd.
func RegistrationState(r Registration) (lease int64, registered bool) {
	g := r.(*etcdRegistration)
	g.mu.Lock()
	defer g.mu.Unlock()
	return int64(g.lease), g.registered
}
