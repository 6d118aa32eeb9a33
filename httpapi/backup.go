package httpapi

import (
	"net/http"
	"time"

	"github.com/dwebkit/dweb/core"
)

// Paths of the backup server's routes (docs/backup.md).
const (
	BackupStatusPath = "/dweb/v1/backup/status"
	BackupAdminPath  = "/dweb/v1/backup/admin"
	DrainPath        = "/dweb/v1/drain"
)

// maxDrainServers bounds the "to" list of a drain request.
const maxDrainServers = 16

// routeBackup adds the backup routes: GET /dweb/v1/backup/status answers
// b.BackupStatus() as JSON (200, also when backup mode is off: "enabled":
// false); GET /dweb/v1/backup/admin answers an AdminURIBody (404 when
// backup mode is off); POST /dweb/v1/drain takes a DrainRequest and
// answers core.DrainReport (200, also when the drain was not complete: see
// "complete"; 400 for a malformed body or admin URI, 404 for an unknown
// group).
func (s *server) routeBackup(mux *http.ServeMux) {
	mux.HandleFunc("GET "+BackupStatusPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.b.BackupStatus())
	})
	mux.HandleFunc("GET "+BackupAdminPath, func(w http.ResponseWriter, r *http.Request) {
		uri, _, err := s.b.AdminURI()
		if err != nil {
			writeError(w, r, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, AdminURIBody{uri})
	})
	mux.HandleFunc("POST "+DrainPath, s.handle(s.drain))
}

func (s *server) drain(w http.ResponseWriter, r *http.Request) error {
	req, err := readDrain(w, r)
	if err != nil {
		return err
	}
	opts := core.DrainOptions{To: req.To, Leave: req.Leave, Wait: time.Duration(req.WaitS * float64(time.Second))}
	if req.Group != "" {
		gi, err := s.b.ResolveGroup(req.Group)
		if err != nil {
			return err
		}
		opts.Group = gi.ID
	}
	rep, err := s.b.Drain(r.Context(), opts)
	return reply(w, rep, err)
}
