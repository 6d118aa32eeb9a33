package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// GET /dweb/v1/events: the node's events (core/events.go) as Server-Sent
// Events (the WHATWG HTML "server-sent events" format, as a browser's
// EventSource or any line reader takes it). Each event is
//
//	id: <event ID>
//	event: <kind>
//	data: <the event's JSON, one line>
//
// followed by a blank line; a comment line (": ping") goes out every
// Options.EventHeartbeat so proxies and clients can tell a quiet stream
// from a dead one. Query: group=KEY|NAME keeps one group's events,
// kinds=a,b some kinds (lagged events always come). A Last-Event-ID
// header resumes after that event from the node's ring of recent events;
// a lagged event first says when some are no longer kept. The stream ends
// when the client goes or the daemon stops. It is one of dweb's own
// routes: the guard keeps it on the unix socket (or TCP with the token).

// DefaultEventHeartbeat is Options.EventHeartbeat when zero.
const DefaultEventHeartbeat = 15 * time.Second

// eventWriteTimeout bounds one write of the event stream: a client that
// reads nothing for that long is dropped (its events would only be
// dropped for it anyway).
const eventWriteTimeout = 30 * time.Second

// maxKinds bounds the kinds a kinds= query may list.
const maxKinds = 32

// EventsPath is the path of the event stream.
const EventsPath = "/dweb/v1/events"

// EventsQuery builds the query of GET /dweb/v1/events: "" or
// "?group=...&kinds=...".
func EventsQuery(group string, kinds []string) string {
	var q []string
	if group != "" {
		q = append(q, "group="+url.QueryEscape(group))
	}
	if len(kinds) > 0 {
		q = append(q, "kinds="+url.QueryEscape(strings.Join(kinds, ",")))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + strings.Join(q, "&")
}

func (s *server) events(w http.ResponseWriter, r *http.Request) error {
	var o core.SubscribeOptions
	q := r.URL.Query()
	if g := q.Get("group"); g != "" {
		gi, err := s.b.ResolveGroup(g)
		if err != nil {
			return err
		}
		o.Groups = []key.RecordKey{gi.ID}
	}
	if ks := q.Get("kinds"); ks != "" {
		for _, k := range strings.Split(ks, ",") {
			k = strings.TrimSpace(k)
			if !core.IsEventKind(k) {
				return &badRequestError{fmt.Sprintf("kinds: %q is not an event kind (%s)", clipKind(k), strings.Join(core.EventKinds, ", "))}
			}
			o.Kinds = append(o.Kinds, k)
		}
		if len(o.Kinds) > maxKinds {
			return &badRequestError{fmt.Sprintf("kinds: %d listed, at most %d", len(o.Kinds), maxKinds)}
		}
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 64)
		if err != nil {
			return &badRequestError{"Last-Event-ID: " + clip(id) + " is not an event ID (a decimal number)"}
		}
		o.Resume, o.After = true, n
	}

	sub := s.b.Subscribe(o)
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf bytes.Buffer
	send := func() bool {
		rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	buf.WriteString(": dweb events\n\n") // the subscription is in place
	if !send() {
		return nil
	}
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for {
		buf.Reset()
		select {
		case <-r.Context().Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil // the node is closing
			}
			data, err := json.Marshal(ev)
			if err != nil {
				s.log.Error("encode event", "id", ev.ID, "kind", ev.Kind, "err", err)
				continue
			}
			fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Kind, data)
		case <-beat.C:
			buf.WriteString(": ping\n\n")
		}
		if !send() {
			return nil
		}
	}
}

// clipKind bounds a kind quoted in an error.
func clipKind(k string) string {
	if len(k) > 40 {
		return k[:40] + "..."
	}
	return k
}

// EventStream reads the events of GET /dweb/v1/events from its body (the
// CLI's `dweb watch`, tests). Comments (the heartbeat) are skipped.
type EventStream struct {
	sc *bufio.Scanner
}

// maxEventLine bounds one line of the stream a client reads.
const maxEventLine = 1 << 20

// NewEventStream reads r, the body of a 200 answer of GET
// /dweb/v1/events.
func NewEventStream(r io.Reader) *EventStream {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxEventLine)
	return &EventStream{sc: sc}
}

// Next returns the next event; io.EOF when the stream ends cleanly
// between events, another error when it breaks or holds a bad event.
func (s *EventStream) Next() (core.Event, error) {
	var data []byte
	for s.sc.Scan() {
		line := s.sc.Bytes()
		switch {
		case len(line) == 0:
			if data == nil {
				continue
			}
			var ev core.Event
			if err := json.Unmarshal(data, &ev); err != nil {
				return ev, fmt.Errorf("event stream: %w", err)
			}
			return ev, nil
		case line[0] == ':':
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			if string(field) == "data" {
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
	if err := s.sc.Err(); err != nil {
		return core.Event{}, fmt.Errorf("event stream: %w", err)
	}
	if data != nil {
		return core.Event{}, fmt.Errorf("event stream: %w", io.ErrUnexpectedEOF)
	}
	return core.Event{}, io.EOF
}
