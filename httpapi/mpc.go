package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mpcfs/mpcfs/control"
)

// Query limits, as the MPC API documents them.
const (
	maxQueryIDs     = 10
	defaultPageSize = 10
	maxPageSize     = 100
)

// api serves /v1/{project_id}/encryptions: authentication first (nothing
// is looked at or created for a request that is not signed right), then
// the operation.
func (s *Server) api(w http.ResponseWriter, r *http.Request, reqID string) {
	project, ok := apiPath(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, codeNoAPI, "no such API: the MPC API is /v1/{project_id}/encryptions")
		return
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		methodNotAllowed(w, "POST, GET, DELETE")
		return
	}
	addr := clientAddr(r)
	if blocked, wait := s.limiter.blocked(addr, s.now()); blocked {
		authFailures.WithLabelValues("throttled").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, codeThrottled, "too many failed authentications from this address: try again later")
		return
	}
	// The signature covers the body, so it is read first, within the cap:
	// a larger body is refused before anything else (it could not be a
	// valid request).
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, control.MaxRequestSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusBadRequest, control.CodeBadRequest, fmt.Sprintf("request body is larger than %d bytes", control.MaxRequestSize))
			return
		}
		writeError(w, http.StatusBadRequest, control.CodeBadRequest, "could not read the request body")
		return
	}
	cred, aerr := s.verify(r, body, s.now())
	if aerr == nil && subtle.ConstantTimeCompare([]byte(project), []byte(cred.ProjectID)) != 1 {
		aerr = authFail("project", "the path's project_id is not the one of this access key")
	}
	if aerr != nil {
		if aerr.reason == "signature" || aerr.reason == "payload" {
			s.limiter.fail(addr, s.now())
		}
		authFailures.WithLabelValues(aerr.reason).Inc()
		s.log.Printf("request %s from %s: %s %s: authentication failed: %s", reqID, addr, r.Method, r.URL.Path, aerr.reason)
		writeError(w, http.StatusUnauthorized, codeAuth, "Incorrect IAM authentication information: "+aerr.msg)
		return
	}
	switch r.Method {
	case http.MethodPost:
		s.create(w, r, body, reqID)
	case http.MethodGet:
		s.query(w, r)
	case http.MethodDelete:
		s.cancel(w, r, reqID)
	}
}

// apiPath returns the project id of /v1/{project_id}/encryptions.
func apiPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/v1/")
	if !ok {
		return "", false
	}
	project, tail, ok := strings.Cut(rest, "/")
	if !ok || !token(project) || (tail != "encryptions" && tail != "encryptions/") {
		return "", false
	}
	return project, true
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, body []byte, reqID string) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" {
		writeError(w, http.StatusBadRequest, control.CodeBadRequest, fmt.Sprintf("Content-Type must be application/json, not %q", truncate(ct, 64)))
		return
	}
	id, apiErr := s.mgr.Submit(body)
	if apiErr != nil {
		writeJSON(w, http.StatusBadRequest, apiErr)
		return
	}
	tasksCreated.Inc()
	s.log.Printf("request %s: task %s created over HTTP", reqID, id)
	writeJSON(w, http.StatusAccepted, struct {
		TaskID string `json:"task_id"`
	}{id})
}

// queryResponse is the MPC query body.
type queryResponse struct {
	TaskArray   []control.TaskView `json:"task_array"`
	Total       int                `json:"total"`
	IsTruncated int                `json:"is_truncated"`
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	q, page, size, apiErr := parseQuery(r.URL.RawQuery)
	if apiErr != nil {
		writeJSON(w, http.StatusBadRequest, apiErr)
		return
	}
	views, total := s.mgr.QueryPage(q, page*size, size)
	resp := queryResponse{TaskArray: views, Total: total}
	if page*size+len(views) < total {
		resp.IsTruncated = 1
	}
	writeJSON(w, http.StatusOK, resp)
}

func badParam(format string, args ...any) *control.APIError {
	return &control.APIError{Code: control.CodeBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// parseQuery reads the query's filters; unknown or repeated parameters are
// refused, like unknown JSON fields: a misspelt filter must not silently
// widen the answer.
func parseQuery(raw string) (q control.TaskQuery, page, size int, apiErr *control.APIError) {
	size = defaultPageSize
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, 0, 0, badParam("malformed query string")
	}
	for k, v := range vals {
		switch k {
		case "task_id", "status", "start_time", "end_time", "page", "size":
		default:
			return q, 0, 0, badParam("unknown query parameter %q", truncate(k, 64))
		}
		if len(v) > 1 {
			return q, 0, 0, badParam("query parameter %q given more than once", k)
		}
	}
	if v := vals.Get("task_id"); v != "" {
		ids := strings.Split(v, ",")
		if len(ids) > maxQueryIDs {
			return q, 0, 0, badParam("parameter \"task_id\": at most %d task ids, got %d", maxQueryIDs, len(ids))
		}
		for _, id := range ids {
			id = strings.TrimSpace(id)
			if id == "" || len(id) > 64 || strings.Trim(id, "0123456789") != "" {
				return q, 0, 0, badParam("parameter \"task_id\": %q is not a task id", truncate(id, 64))
			}
			q.IDs = append(q.IDs, id)
		}
	}
	if v := vals.Get("status"); v != "" {
		st := control.Status(v)
		switch st {
		case control.Waiting, control.Processing, control.Succeeded, control.Failed, control.Canceled:
			q.Status = st
		default:
			return q, 0, 0, badParam("parameter \"status\": %q is not one of WAITING, PROCESSING, SUCCEEDED, FAILED, CANCELED", truncate(v, 64))
		}
	}
	for _, t := range []struct {
		name string
		dst  *string
	}{{"start_time", &q.Since}, {"end_time", &q.Until}} {
		if v := vals.Get(t.name); v != "" {
			if _, err := control.ParseTime(v); err != nil || len(v) != 14 {
				return q, 0, 0, badParam("parameter %q: %q is not a time yyyymmddhhmmss", t.name, truncate(v, 64))
			}
			*t.dst = v
		}
	}
	if q.Since != "" && q.Until != "" && q.Since > q.Until {
		return q, 0, 0, badParam("parameter \"start_time\" is after \"end_time\"")
	}
	if v := vals.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1e6 {
			return q, 0, 0, badParam("parameter \"page\": %q is not a page number (from 0)", truncate(v, 64))
		}
		page = n
	}
	if v := vals.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return q, 0, 0, badParam("parameter \"size\": %q is not between 1 and %d", truncate(v, 64), maxPageSize)
		}
		size = n
	}
	return q, page, size, nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, reqID string) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, badParam("malformed query string"))
		return
	}
	for k, v := range vals {
		if k != "task_id" {
			writeJSON(w, http.StatusBadRequest, badParam("unknown query parameter %q", truncate(k, 64)))
			return
		}
		if len(v) > 1 {
			writeJSON(w, http.StatusBadRequest, badParam("query parameter \"task_id\" given more than once"))
			return
		}
	}
	id := vals.Get("task_id")
	if id == "" {
		writeJSON(w, http.StatusBadRequest, badParam("parameter \"task_id\" is required"))
		return
	}
	if len(id) > 64 || strings.Trim(id, "0123456789") != "" {
		writeJSON(w, http.StatusBadRequest, badParam("parameter \"task_id\": %q is not a task id", truncate(id, 64)))
		return
	}
	if len(s.mgr.QueryTasks(control.TaskQuery{IDs: []string{id}})) == 0 {
		// Looks the id up in the task store too: another mount may have
		// created it a moment ago.
		writeJSON(w, http.StatusBadRequest, &control.APIError{Code: control.CodeTaskNotExist, Msg: fmt.Sprintf("task %q does not exist", id)})
		return
	}
	if apiErr := s.mgr.Cancel(id); apiErr != nil {
		writeJSON(w, http.StatusBadRequest, apiErr)
		return
	}
	s.log.Printf("request %s: task %s canceled over HTTP", reqID, id)
	w.WriteHeader(http.StatusNoContent)
}

// truncate bounds what of a client's input is echoed in an error.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
