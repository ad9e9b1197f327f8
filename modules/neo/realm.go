package neo

// HostRealm is what the identity service needs of a host: the tenant and
// the realm (a stage, or the Platform) its sign-in pages serve.
type HostRealm struct {
	// Tenant owns the host.
	Tenant *Tenant
	// Stage is the stage of a Runtime host or custom domain; empty for the
	// Platform host.
	Stage string
	// Platform is true for the tenant's Platform host.
	Platform bool
	// Custom is true for a custom domain.
	Custom bool
}

// Realm returns the realm name: "platform" or the stage.
func (h HostRealm) Realm() string {
	if h.Platform {
		return RealmPlatform
	}
	return h.Stage
}

// RealmForHost returns the tenant and realm of a host (any case, with or
// without port or trailing dot): O(stages) lookups, whatever the number of
// tenants. Hosts of no tenant and pending custom domains: ok is false.
func (s *Snapshot) RealmForHost(host string) (HostRealm, bool) {
	h, ok := NormalizeHost(host)
	if !ok {
		return HostRealm{}, false
	}
	m := s.resolveHost(h)
	switch m.kind {
	case hostRuntime, hostCustom:
		return HostRealm{Tenant: m.t, Stage: s.g.stages.names[m.stage], Custom: m.kind == hostCustom}, true
	case hostPlatform:
		return HostRealm{Tenant: m.t, Platform: true}, true
	}
	return HostRealm{}, false
}
