package control

import (
	"encoding/json"
	"sort"
	"time"
)

// What the HTTP API (package httpapi) needs from the Manager beyond what
// the FUSE layer uses: create without a request file name, a filtered
// query, and an output's modification time.

// MaxRequestSize is the largest create request accepted, in bytes.
const MaxRequestSize = maxRequestSize

// Submit creates a task from a request body, as a POST to the MPC API
// does: no control/encryptions/ file name is recorded. It returns the new
// task's id, or the error that the 400 body shows.
func (m *Manager) Submit(data []byte) (string, *APIError) {
	body := m.create(data)
	var res struct {
		TaskID string `json:"task_id"`
		APIError
	}
	if err := json.Unmarshal(body, &res); err != nil || (res.TaskID == "" && res.Code == "") {
		return "", &APIError{Code: CodeOperationFailed, Msg: "internal error: unreadable create response"}
	}
	if res.TaskID == "" {
		return "", &res.APIError
	}
	return res.TaskID, nil
}

// TaskQuery selects tasks; every field set must match.
type TaskQuery struct {
	IDs    []string // any of these ids; empty: every task
	Status Status   // "": any status
	// Since and Until bound create_time (yyyymmddhhmmss UTC), both
	// inclusive; "": unbounded.
	Since, Until string
}

// QueryTasks returns the views of the tasks matching q, newest first. Ids
// this Manager does not know yet are looked for in the task store (another
// mount may have just created them).
func (m *Manager) QueryTasks(q TaskQuery) []TaskView {
	if len(q.IDs) > 0 {
		m.mu.Lock()
		var missing []string
		for _, id := range q.IDs {
			if m.tasks[id] == nil {
				missing = append(missing, id)
			}
		}
		m.mu.Unlock()
		for _, id := range missing {
			m.lookupStore(id) // adopts it if the store has it
		}
	}
	type found struct {
		view    TaskView
		created int64
	}
	var out []found
	match := func(t *task) {
		r := &t.rec
		if (q.Status != "" && r.Status != q.Status) ||
			(q.Since != "" && r.CreateTime < q.Since) ||
			(q.Until != "" && r.CreateTime > q.Until) {
			return
		}
		out = append(out, found{r.TaskView, r.Created})
	}
	m.mu.Lock()
	if len(q.IDs) > 0 {
		seen := map[string]bool{}
		for _, id := range q.IDs {
			if t := m.tasks[id]; t != nil && !seen[id] {
				seen[id] = true
				match(t)
			}
		}
	} else {
		for _, t := range m.tasks {
			match(t)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.view.CreateTime != b.view.CreateTime {
			return a.view.CreateTime > b.view.CreateTime
		}
		if a.created != b.created {
			return a.created > b.created
		}
		return a.view.TaskID > b.view.TaskID
	})
	views := make([]TaskView, len(out))
	for i := range out {
		views[i] = out[i].view
	}
	return views
}

// ModTime is when the output's task SUCCEEDED (its saved end_time, whole
// seconds), the same after every restart: the HTTP origin's Last-Modified.
func (m *Manager) ModTime(o *Output) time.Time {
	m.mu.Lock()
	end, created := o.task.rec.EndTime, o.task.rec.CreateTime
	m.mu.Unlock()
	for _, s := range []string{end, created} {
		if t, err := time.Parse(timeFormat, s); err == nil {
			return t
		}
	}
	return time.Unix(0, 0).UTC()
}

// ParseTime parses MPC's yyyymmddhhmmss (UTC).
func ParseTime(s string) (time.Time, error) { return time.Parse(timeFormat, s) }
