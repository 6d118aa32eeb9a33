package httpapi

import (
	"github.com/dwebkit/dweb/core"
	"github.com/prometheus/client_golang/prometheus"
)

// StorageSource is what the collector of NewBackupCollector reads at scrape time.
type StorageSource interface {
	BackupStatus() core.BackupStatus
	StorageUsage() (core.StorageUsage, error)
}

var _ StorageSource = (*core.Backend)(nil)

// backupCollector exports the blob store and the backup loop
// (docs/http-api.md, "Metrics"), read once per scrape:
//
//	dweb_blobs_stored                      complete blobs the store keeps itself (gauge)
//	dweb_blob_bytes_stored                 their bytes: what --quota bounds with the next (gauge)
//	dweb_blob_pack_dead_bytes              bytes of deleted blobs still in pack files until GC compacts them (gauge)
//	dweb_blob_ref_bytes                    bytes of blobs in reference mode, kept in the app's files (gauge)
//	dweb_storage_quota_bytes               --quota; 0: none (gauge)
//	dweb_storage_reserved_bytes            bytes of downloads under way reserved against the quota (gauge)
//	dweb_backup_downloads_in_flight        blobs the backup is downloading (gauge)
//	dweb_backup_fetched_bytes_total        verified bytes received from members by this process (counter)
//	dweb_backup_resumed_bytes_total        bytes downloads found verified by an earlier run (counter)
//	dweb_backup_passes_total               group passes completed (counter)
//	dweb_backup_errors_total{kind}         errors of the passes: read_group, read_repo, download, quota (counter)
//	dweb_backup_files{group,state}         a group's file blobs at its last pass, state held or missing (gauge)
//
// The backup metrics are absent when backup mode is off; the store's are
// absent if its usage cannot be read (the scrape goes on).
type backupCollector struct {
	src StorageSource

	blobs, bytes, deadBytes, refBytes  *prometheus.Desc
	quota, reserved                    *prometheus.Desc
	inFlight, fetched, resumed, passes *prometheus.Desc
	errs, files                        *prometheus.Desc
}

// errorKinds are the kinds dweb_backup_errors_total always exports (0 when
// none happened), so a rate() over them has a series from the start.
var errorKinds = []string{"read_group", "read_repo", "download", "quota"}

// NewBackupCollector returns the collector of the store's and the backup's
// metrics, read from src at scrape time.
func NewBackupCollector(src StorageSource) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &backupCollector{
		src:       src,
		blobs:     d("dweb_blobs_stored", "Complete blobs the blob store keeps itself."),
		bytes:     d("dweb_blob_bytes_stored", "Bytes of the complete blobs the store keeps itself (what --quota bounds, with dweb_blob_pack_dead_bytes)."),
		deadBytes: d("dweb_blob_pack_dead_bytes", "Bytes of deleted blobs still in pack files until GC compacts them (counted against --quota)."),
		refBytes:  d("dweb_blob_ref_bytes", "Bytes of complete blobs in reference mode, kept in the app's files."),
		quota:     d("dweb_storage_quota_bytes", "The storage quota in bytes (--quota); 0: none."),
		reserved:  d("dweb_storage_reserved_bytes", "Bytes of downloads under way reserved against the quota."),
		inFlight:  d("dweb_backup_downloads_in_flight", "Blobs the backup is downloading."),
		fetched:   d("dweb_backup_fetched_bytes_total", "Verified bytes the backup received from members, this process."),
		resumed:   d("dweb_backup_resumed_bytes_total", "Bytes backup downloads found verified by an earlier run."),
		passes:    d("dweb_backup_passes_total", "Backup group passes completed."),
		errs:      d("dweb_backup_errors_total", "Errors of the backup passes, by kind.", "kind"),
		files:     d("dweb_backup_files", "File blobs of a group at its last backup pass, held or missing.", "group", "state"),
	}
}

func (c *backupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.blobs, c.bytes, c.deadBytes, c.refBytes, c.quota, c.reserved,
		c.inFlight, c.fetched, c.resumed, c.passes, c.errs, c.files} {
		ch <- d
	}
}

func (c *backupCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if u, err := c.src.StorageUsage(); err == nil {
		gauge(c.blobs, float64(u.Blobs))
		gauge(c.bytes, float64(u.Bytes))
		gauge(c.deadBytes, float64(u.PackDeadBytes))
		gauge(c.refBytes, float64(u.RefBytes))
		gauge(c.quota, float64(u.Quota))
		gauge(c.reserved, float64(u.Reserved))
	}
	st := c.src.BackupStatus()
	if !st.Enabled {
		return
	}
	gauge(c.inFlight, float64(len(st.Downloading)))
	counter(c.fetched, float64(st.Fetched))
	counter(c.resumed, float64(st.Resumed))
	counter(c.passes, float64(st.Passes))
	seen := make(map[string]bool)
	for _, k := range errorKinds {
		seen[k] = true
		counter(c.errs, float64(st.ErrorsByKind[k]), k)
	}
	for k, n := range st.ErrorsByKind {
		if !seen[k] {
			counter(c.errs, float64(n), k)
		}
	}
	for _, g := range st.Groups {
		gauge(c.files, float64(g.Held), g.Group.String(), "held")
		gauge(c.files, float64(g.Missing), g.Group.String(), "missing")
	}
}
