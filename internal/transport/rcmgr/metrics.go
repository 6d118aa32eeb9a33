package rcmgr

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	refused *prometheus.CounterVec
	inUse   *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dweb_rcmgr_refused_total",
			Help: "Resources refused by the resource manager, by the scope that had no room (peer, ip, prefix, system) and the kind.",
		}, []string{"scope", "kind"}),
		inUse: prometheus.NewDesc("dweb_rcmgr_in_use",
			"Resources the node holds now, by kind.", []string{"kind"}, nil),
	}
}

// refused counts one refusal; nothing on a nil Manager.
func (m *Manager) refused(s Scope, k Kind) {
	if m == nil {
		return
	}
	m.metrics.refused.WithLabelValues(string(s), string(k)).Inc()
}

// Describe implements prometheus.Collector.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	m.metrics.refused.Describe(ch)
	ch <- m.metrics.inUse
}

// Collect implements prometheus.Collector.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	m.metrics.refused.Collect(ch)
	m.mu.Lock()
	quotas := append([]*Quota(nil), m.quotas...)
	m.mu.Unlock()
	byKind := map[Kind]int{}
	var order []Kind
	for _, q := range quotas {
		if _, ok := byKind[q.kind]; !ok {
			order = append(order, q.kind)
		}
		byKind[q.kind] += q.total()
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(m.metrics.inUse, prometheus.GaugeValue, float64(byKind[k]), string(k))
	}
}
