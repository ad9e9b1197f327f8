package neoegress

import (
	"net/netip"
	"testing"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func TestResolverWithoutRegistry(t *testing.T) {
	// A neo app that has not been provisioned has no registry: nobody is known.
	r := Resolver{App: new(neo.App)}
	if _, ok := r.CallerByAddress(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("an address was identified without a registry")
	}
	if _, ok := r.CallerByCredentials("u", "p"); ok {
		t.Fatal("credentials were accepted by the registry resolver")
	}
}
