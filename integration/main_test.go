package integration

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// shortTier is what `go test -short ./integration` runs: one test of each
// role and route through the built binary (the config files adapt, the
// local topology answers over NATS, edge hygiene, the WAF's tenant policy,
// a NATS stream's fidelity, the registry's host checks, zone failover).
// The full suite runs everything; -run overrides the list.
const shortTier = `^(TestCaddyfilesAdapt|TestTenantFilesAdapt|TestBinaryModules|TestLocalTopologyServesDemoTenants|TestLocalRuntimeOverNATS|` +
	`TestEdgeForwardedHeaders|TestEdgeMalformedFraming|TestEdgeWAFTenantPolicy|TestNATSBinaryFidelity|TestRegistrySpoofing|TestZoneFailover)$`

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() && flag.Lookup("test.run").Value.String() == "" {
		if err := flag.Set("test.run", shortTier); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}
