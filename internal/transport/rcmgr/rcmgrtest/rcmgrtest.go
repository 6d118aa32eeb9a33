// Package rcmgrtest helps the tests of the layers that count their limits
// in an rcmgr.Manager read what it refused.
package rcmgrtest

import (
	"testing"

	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/prometheus/client_golang/prometheus"
)

// Refused returns dweb_rcmgr_refused_total{scope,kind} of m, gathered
// through a registry as Prometheus would scrape it (0 if the series does
// not exist yet).
func Refused(t testing.TB, m *rcmgr.Manager, scope rcmgr.Scope, kind rcmgr.Kind) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dweb_rcmgr_refused_total" {
			continue
		}
		for _, mt := range mf.Metric {
			labels := map[string]string{}
			for _, l := range mt.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["scope"] == string(scope) && labels["kind"] == string(kind) {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}
