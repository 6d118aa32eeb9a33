package dht

import (
	"errors"

	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Refusal reasons, the values of the "reason" label of
// dweb_dht_refused_total.
const (
	ReasonMalformed    = "malformed"     // a request that does not decode or breaks the protocol
	ReasonOversized    = "oversized"     // a frame over MaxMessageSize, or a value/descriptor over record's limits
	ReasonBadSignature = "bad_signature" // a descriptor or value whose signature does not verify
	ReasonNotWriter    = "not_writer"    // a value signed by a key the schema does not give the subkey to
	ReasonSubkeyRange  = "subkey_range"  // a subkey the schema does not have
	ReasonBadSchema    = "bad_schema"    // a descriptor whose schema breaks record's limits
	ReasonKeyMismatch  = "key_mismatch"  // a descriptor that does not hash to the record key sent with it
	ReasonQuota        = "quota"         // a peer over its record or watch quota
	ReasonRateLimited  = "rate_limited"  // a peer over its request rate
	ReasonIPDiversity  = "ip_diversity"  // a contact kept out of the routing table by the IP-prefix limit
	ReasonSeqRange     = "seq_range"     // a value whose seq is above record.MaxSeq
	ReasonNoList       = "no_list"       // a slot of a membership-checked record, and no list held to check it
	ReasonBadList      = "bad_list"      // a membership list that may not replace the one held
)

// Metrics are the DHT's Prometheus collectors. One Metrics may be shared by
// many DHTs (in-process test networks and benchmarks sum over them). It is
// a prometheus.Collector: register it once, e.g.
// registry.MustRegister(m).
//
//	dweb_dht_requests_total{op}        requests served, by op (ping, find_node, get, store, inspect, watch, value_changed, handoff)
//	dweb_dht_refused_total{reason}     requests, values and contacts refused (see the Reason constants)
//	dweb_dht_lookup_hops{op}           hops of an iterative lookup to its nearest answering node: 1 for a contact from the routing table, one more per answer that led to it (histogram)
//	dweb_dht_lookup_stalls_total       lookup queries not answered within their contact's stall timeout (RFC 6298 RTO), each replaced by another query
//	dweb_dht_replicated_total          values sent to holders by replication, hand-off and republishing
//	dweb_dht_expired_total             records dropped because nobody refreshed them within Options.Expiry
//	dweb_dht_watch_pushes_total        VALUE_CHANGED pushes sent to watchers
//	dweb_dht_queued_writes             offline writes waiting for the network (gauge, last value set by any DHT sharing the Metrics)
type Metrics struct {
	Requests     *prometheus.CounterVec
	Refused      *prometheus.CounterVec
	LookupHops   *prometheus.HistogramVec
	LookupStalls prometheus.Counter
	Replicated   prometheus.Counter
	Expired      prometheus.Counter
	Pushes       prometheus.Counter
	Queued       prometheus.Gauge
}

// NewMetrics returns a fresh, unregistered set of collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dweb_dht_requests_total", Help: "DHT requests served, by op.",
		}, []string{"op"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dweb_dht_refused_total", Help: "DHT requests, values and contacts refused, by reason.",
		}, []string{"reason"}),
		LookupHops: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dweb_dht_lookup_hops",
			Help:    "Hops of an iterative lookup to its nearest answering node (1: from the routing table).",
			Buckets: []float64{1, 2, 3, 4, 5, 6, 8, 12, 16},
		}, []string{"op"}),
		LookupStalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dweb_dht_lookup_stalls_total", Help: "Lookup queries not answered within their contact's stall timeout, each replaced by another query.",
		}),
		Replicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dweb_dht_replicated_total", Help: "Values sent to holders by replication, hand-off and republishing.",
		}),
		Expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dweb_dht_expired_total", Help: "Records dropped because nobody refreshed them in time.",
		}),
		Pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dweb_dht_watch_pushes_total", Help: "VALUE_CHANGED pushes sent to watchers.",
		}),
		Queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dweb_dht_queued_writes", Help: "Offline writes waiting for the network.",
		}),
	}
}

// Hops returns the sum and count of the hops observed for lookups of op
// (dweb_dht_lookup_hops{op}: "get", "set", ...); zeros if none were.
func (m *Metrics) Hops(op string) (sum float64, count uint64) {
	h, ok := m.LookupHops.WithLabelValues(op).(prometheus.Metric)
	if !ok {
		return 0, 0
	}
	var d dto.Metric
	if h.Write(&d) != nil || d.Histogram == nil {
		return 0, 0
	}
	return d.Histogram.GetSampleSum(), d.Histogram.GetSampleCount()
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Requests, m.Refused, m.LookupHops, m.LookupStalls, m.Replicated, m.Expired, m.Pushes, m.Queued}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// refused counts one refusal for reason.
func (m *Metrics) refused(reason string) { m.Refused.WithLabelValues(reason).Inc() }

// refusalReason maps an error that made this node refuse a peer's input to
// its metric reason, or "" for errors that are not refusals (stale values,
// internal failures).
func refusalReason(err error) string {
	if _, ok := errors.AsType[*transport.LimitError](err); ok {
		return ReasonOversized
	}
	switch {
	case err == nil, errors.Is(err, ErrStale):
		return ""
	case errors.Is(err, record.ErrTooLarge):
		return ReasonOversized
	case errors.Is(err, record.ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, record.ErrNotWriter):
		return ReasonNotWriter
	case errors.Is(err, record.ErrSubkeyRange):
		return ReasonSubkeyRange
	case errors.Is(err, record.ErrBadSchema):
		return ReasonBadSchema
	case errors.Is(err, ErrKeyMismatch):
		return ReasonKeyMismatch
	case errors.Is(err, ErrQuota):
		return ReasonQuota
	case errors.Is(err, ErrRateLimited):
		return ReasonRateLimited
	case errors.Is(err, record.ErrSeqRange):
		return ReasonSeqRange
	case errors.Is(err, ErrNoList):
		return ReasonNoList
	case errors.Is(err, ErrBadList):
		return ReasonBadList
	case errors.Is(err, ErrBadRequest), errors.Is(err, record.ErrMalformed):
		return ReasonMalformed
	}
	return ""
}
