package core

import (
	"io"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// traffic counts the bytes of blob transfers through tunnels: sent while
// serving members, received while downloading from them (after the
// tunnel's framing, so they are blob-protocol bytes), and the blob
// streams this node opened to members (each a tunnel handshake).
type traffic struct {
	sent, received atomic.Int64
	opened         atomic.Int64
}

// countingConn counts what passes through a tunnel session.
type countingConn struct {
	io.ReadWriteCloser
	read, written *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	if c.read != nil {
		c.read.Add(int64(n))
	}
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	if c.written != nil {
		c.written.Add(int64(n))
	}
	return n, err
}

// nodeCollectors are the node-wide figures beside the DHT's own metrics:
// records held and blob bytes sent and received.
// TrafficStats are the blob bytes this node moved through tunnels since
// it started (the dweb_blob_* metrics).
type TrafficStats struct {
	BlobBytesSent     int64 `json:"blob_bytes_sent"`
	BlobBytesReceived int64 `json:"blob_bytes_received"`
	BlobStreamsOpened int64 `json:"blob_streams_opened"`
}

// Traffic returns the blob bytes this node sent and received through
// tunnels, and the blob streams it opened, since it started.
func (b *Backend) Traffic() TrafficStats {
	return TrafficStats{BlobBytesSent: b.traffic.sent.Load(), BlobBytesReceived: b.traffic.received.Load(), BlobStreamsOpened: b.traffic.opened.Load()}
}

func (b *Backend) nodeCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dweb_dht_records_held", Help: "DHT records (descriptors) this node keeps: held for others, its own, read.",
		}, func() float64 {
			if b.curDHT() == nil {
				return 0
			}
			n, _ := b.curDHT().RecordsHeld()
			return float64(n)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dweb_blob_bytes_sent_total", Help: "Blob protocol bytes sent to members through tunnels.",
		}, func() float64 { return float64(b.traffic.sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dweb_blob_bytes_received_total", Help: "Blob protocol bytes received from members through tunnels.",
		}, func() float64 { return float64(b.traffic.received.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dweb_blob_streams_opened_total", Help: "Blob streams opened to members (one tunnel handshake each).",
		}, func() float64 { return float64(b.traffic.opened.Load()) }),
	}
}
