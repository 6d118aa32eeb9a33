package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestBenchSoakShort runs `dweb bench soak` for a few seconds on four
// daemons (children: this test binary running main, see
// bench_transfer_test.go), one behind the lossy link: groups, adds,
// syncs, a SIGKILL and restart, the attacker, and the check on disk. The
// attacker's address is capped in its IP scope, so the node's totals are
// never reached: no member's opening is refused for the attacker's sake.
func TestBenchSoakShort(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := benchSoak(ctx, t.TempDir(), soakOptions{nodes: 4, duration: 5 * time.Second, killFrac: 0.3, rssBound: 256, maxFileKB: 64, attack: true, lossyFrac: 0.3, link: defaultSoakLink})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if err := res.failure(); err != nil {
		t.Fatal(err)
	}
	if res.Kills != 1 || res.Adds == 0 || res.Syncs == 0 || res.CopiesChecked < res.FilesConfirmed || res.PeakRSSMB <= 0 {
		t.Fatalf("result %+v", res)
	}
	if res.Attack.IDs == 0 || res.Attack.StreamsOpened == 0 || res.Attack.Held > 0 {
		t.Fatalf("attack %+v", res.Attack)
	}
	if len(res.Link.Nodes) != 1 || res.Link.Nodes[0] != 3 {
		t.Fatalf("lossy nodes %v, want [3]", res.Link.Nodes)
	}
	if res.Refused["ip/handshake"] == 0 {
		t.Fatalf("refused %v: the attacker's address was never capped", res.Refused)
	}
	for k, v := range res.Refused {
		if strings.HasPrefix(k, "system/") && v > 0 {
			t.Fatalf("refused %v: a node's total was reached", res.Refused)
		}
	}
}

// TestParseRefused reads the resource manager's refusals from a scrape.
func TestParseRefused(t *testing.T) {
	got := parseRefused(strings.NewReader(`# HELP dweb_rcmgr_refused_total x
# TYPE dweb_rcmgr_refused_total counter
dweb_rcmgr_refused_total{kind="handshake",scope="peer"} 144
dweb_rcmgr_refused_total{kind="stream",scope="system"} 0
dweb_rcmgr_refused_total{kind="conn",scope="ip"} 2.5e+01
dweb_rcmgr_usage{kind="conn",scope="system"} 3
`))
	if len(got) != 2 || got["peer/handshake"] != 144 || got["ip/conn"] != 25 {
		t.Fatalf("got %v", got)
	}
}
