package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/mpcfs/mpcfs/control"
)

// The origin serves task outputs, and nothing else: a path is looked up
// among the outputs of SUCCEEDED tasks only, so no spelling of a path can
// reach a source object (or the task store). Outputs are encrypted as they
// are sent, straight from the cipher's chunks, as the mount reads them.

// contentTypes by extension; anything else is application/octet-stream.
var contentTypes = map[string]string{
	".m3u8": "application/vnd.apple.mpegurl",
	".m3u":  "application/vnd.apple.mpegurl",
	".ts":   "video/mp2t",
	".mp4":  "video/mp4",
	".m4s":  "video/mp4",
	".m4v":  "video/mp4",
	".m4a":  "audio/mp4",
	".aac":  "audio/aac",
	".mpd":  "application/dash+xml",
	".vtt":  "text/vtt",
}

// The CORS answer: what a player may send and read.
const (
	corsAllowHeaders  = "Range, If-None-Match, If-Modified-Since, If-Range, If-Match"
	corsExposeHeaders = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, X-Request-Id"
	corsMaxAge        = "86400"
)

// readSize is how much ciphertext one ReadData hands to the connection.
const readSize = 1 << 20

// writeStall bounds how long one chunk may take to reach a client: a
// client that stops reading (or reads a byte a minute) would otherwise
// hold a cipher stream and its chunks for ever.
const writeStall = time.Minute

func (s *Server) origin(w http.ResponseWriter, r *http.Request, reqID string) {
	h := w.Header()
	s.setCORS(h, r)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		s.preflight(w, r)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		originError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	bucket, key, ok := originPath(r)
	if !ok {
		originError(w, http.StatusNotFound, "not found")
		return
	}
	o, err := s.mgr.Outputs().Find(r.Context(), bucket, key)
	if err != nil {
		s.log.Printf("origin: looking up %s/%s: %v", bucket, key, err)
		originError(w, http.StatusServiceUnavailable, "the task store did not answer: try again")
		return
	}
	if o == nil {
		originError(w, http.StatusNotFound, "not found")
		return
	}
	size := o.Size
	etag := fmt.Sprintf(`"%016x-%x"`, o.Ino, size)
	mod := s.mgr.Outputs().ModTime(o).UTC()
	ct := contentTypes[strings.ToLower(path.Ext(key))]
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("ETag", etag)
	h.Set("Last-Modified", mod.Format(http.TimeFormat))
	h.Set("Content-Type", ct)
	h.Set("Accept-Ranges", "bytes")
	h.Set("X-Content-Type-Options", "nosniff")
	if s.maxAge < 0 {
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(s.maxAge.Seconds())))
	}

	if code := conditional(r, etag, mod); code != 0 {
		if code == http.StatusNotModified {
			h.Del("Content-Type")
			w.WriteHeader(code)
			return
		}
		originError(w, code, "precondition failed")
		return
	}

	start, length, partial, ok := requestedRange(r, etag, mod, size)
	if !ok {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		originError(w, http.StatusRequestedRangeNotSatisfiable, "requested range not satisfiable")
		return
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method == http.MethodHead || length == 0 {
		w.WriteHeader(status)
		return
	}
	if o.IsPlaylist() {
		data, err := s.mgr.Outputs().Playlist(o)
		if err != nil || int64(len(data)) != size {
			s.log.Printf("request %s: opening output %s/%s: %v", reqID, o.Bucket, o.Key, err)
			http.Error(w, "output cannot be made", http.StatusBadGateway)
			return
		}
		w.WriteHeader(status)
		w.Write(data[start : start+length])
		return
	}
	s.sendSegment(w, r, o, start, length, status, reqID)
}

// sendSegment streams ciphertext [start, start+length) of a segment. The
// first chunk is made before the status is sent, so a source that cannot
// be read gives a 502; a failure later cuts the connection (the client
// sees a short body, never wrong bytes).
func (s *Server) sendSegment(w http.ResponseWriter, r *http.Request, o *control.Output, start, length int64, status int, reqID string) {
	defer s.admit(r.Context())()
	f, err := s.mgr.Outputs().Open(o)
	if err != nil {
		s.log.Printf("request %s: opening output %s/%s: %v", reqID, o.Bucket, o.Key, err)
		originError(w, http.StatusBadGateway, "output cannot be made")
		return
	}
	rd := f.NewReader()
	defer rd.Close()
	ctx := r.Context()
	rc := http.NewResponseController(w)
	warmed := o.Next() == nil || start != 0
	for off, end := start, start+length; off < end; {
		d, err := rd.ReadData(ctx, off, int(min(readSize, end-off)))
		if err == nil && d.Len() == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			d.Release()
			if ctx.Err() != nil {
				return // the client went away
			}
			s.log.Printf("request %s: reading %s/%s at %d: %v", reqID, o.Bucket, o.Key, off, err)
			if off == start {
				originError(w, http.StatusBadGateway, "output cannot be read: its source is unavailable or changed")
				return
			}
			panic(http.ErrAbortHandler) // cut the response: a short body, not a wrong one
		}
		if off == start {
			w.WriteHeader(status)
		}
		rc.SetWriteDeadline(time.Now().Add(writeStall)) // an error: the writer has no deadlines, nothing to bound
		for _, sl := range d.Slices {
			if _, err := w.Write(sl); err != nil {
				d.Release()
				return
			}
		}
		off += int64(d.Len())
		d.Release()
		// A GET that has sent Tuning.WarmAfter of a segment in sequence is
		// a player or a copy, not a probe: the playlist's next segments
		// are warmed (crypto.File.Warm), as the mount does.
		if !warmed && (off >= s.mgr.Tuning().WarmAfter || off == end) {
			warmed = true
			s.mgr.Outputs().WarmNext(o)
		}
	}
}

// admit waits for the turn of one more segment stream
// (Tuning.OriginStreams) for up to Tuning.OriginQueueWait, and returns
// what ends it. Past the wait the stream goes anyway, uncounted: slow
// clients holding every turn delay the others, never stop them.
func (s *Server) admit(ctx context.Context) (done func()) {
	if s.streams == nil {
		return func() {}
	}
	select {
	case s.streams <- struct{}{}:
		return func() { <-s.streams }
	default:
	}
	originQueued.Inc()
	t := time.NewTimer(s.qwait)
	defer t.Stop()
	select {
	case s.streams <- struct{}{}:
		return func() { <-s.streams }
	case <-t.C:
		originUnqueued.Inc()
	case <-ctx.Done():
	}
	return func() {}
}

// originError answers an error without the output's validators and
// freshness: no cache may keep an error in the output's place (a 404 may
// become the output as soon as its task SUCCEEDS).
func originError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	for _, k := range []string{"ETag", "Last-Modified", "Cache-Control"} {
		h.Del(k)
	}
	h.Set("Cache-Control", "no-store")
	http.Error(w, msg, code)
}

// originPath splits /buckets/<bucket>/<key> and refuses anything odd: an
// escaped '/' or '\', empty, "." or ".." segments, control bytes. (No
// such path names an output; refusing them makes that plain.)
func originPath(r *http.Request) (bucket, key string, ok bool) {
	if raw := strings.ToLower(r.URL.RawPath); strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/buckets/")
	if !ok {
		return "", "", false
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 2 {
		return "", "", false
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "\\\x00") || strings.IndexFunc(s, func(c rune) bool { return c < 0x20 || c == 0x7f }) >= 0 {
			return "", "", false
		}
	}
	return segs[0], strings.Join(segs[1:], "/"), true
}

// conditional evaluates If-Match, If-Unmodified-Since, If-None-Match and
// If-Modified-Since (RFC 9110 section 13.2.2 order); it returns 304, 412,
// or 0 to go on.
func conditional(r *http.Request, etag string, mod time.Time) int {
	if im := r.Header.Get("If-Match"); im != "" {
		if !etagListMatch(im, etag, true) {
			return http.StatusPreconditionFailed
		}
	} else if ius := r.Header.Get("If-Unmodified-Since"); ius != "" {
		if t, err := http.ParseTime(ius); err == nil && mod.After(t) {
			return http.StatusPreconditionFailed
		}
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagListMatch(inm, etag, false) {
			return http.StatusNotModified
		}
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

// etagListMatch matches a header's list of entity tags ("*" matches any).
// Weak comparison ignores W/ prefixes; strong comparison refuses weak tags.
func etagListMatch(list, etag string, strong bool) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		weak := strings.HasPrefix(t, "W/")
		if weak && strong {
			continue
		}
		if strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// requestedRange returns the bytes to send: the whole file, or the single
// range asked for (when If-Range, if any, still holds). ok is false for an
// unsatisfiable range (416). Several ranges are answered with the whole
// file (RFC 9110 lets a server ignore Range), which players never ask for.
func requestedRange(r *http.Request, etag string, mod time.Time, size int64) (start, length int64, partial, ok bool) {
	rh := r.Header.Get("Range")
	if rh == "" || r.Method != http.MethodGet && r.Method != http.MethodHead {
		return 0, size, false, true
	}
	if ir := r.Header.Get("If-Range"); ir != "" {
		if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") {
			if strings.HasPrefix(ir, "W/") || ir != etag {
				return 0, size, false, true
			}
		} else if t, err := http.ParseTime(ir); err != nil || !t.Equal(mod) {
			return 0, size, false, true
		}
	}
	spec, found := strings.CutPrefix(rh, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size, false, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, size, false, true
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, size, false, true
		}
		if n == 0 || size == 0 {
			return 0, 0, false, false
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, size, false, true
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, size, false, true // invalid: ignored
		}
		b = min(b, size-1)
	}
	if a >= size {
		return 0, 0, false, false
	}
	return a, b - a + 1, true, true
}

// setCORS adds the CORS headers for an allowed Origin.
func (s *Server) setCORS(h http.Header, r *http.Request) {
	if len(s.cors) == 0 {
		return
	}
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	switch {
	case s.cors["*"]:
		h.Set("Access-Control-Allow-Origin", "*")
	case origin != "" && s.cors[origin]:
		h.Set("Access-Control-Allow-Origin", origin)
	default:
		return
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// preflight answers a CORS preflight for GET/HEAD from an allowed origin.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Allow", "GET, HEAD, OPTIONS")
	if h.Get("Access-Control-Allow-Origin") == "" {
		// Not an allowed origin (or not a CORS request): no permission.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch r.Header.Get("Access-Control-Request-Method") {
	case "", http.MethodGet, http.MethodHead:
	default:
		h.Del("Access-Control-Allow-Origin")
		h.Del("Access-Control-Expose-Headers")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
}
