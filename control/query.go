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
	views, _ := m.QueryPage(q, 0, -1)
	return views
}

// QueryPage is QueryTasks's views from from on, at most size of them
// (size < 0: all), and how many match in all. Tasks are matched on the
// catalogue; only the records of the page are read.
func (m *Manager) QueryPage(q TaskQuery, from, size int) ([]TaskView, int) {
	if len(q.IDs) > 0 {
		m.mu.Lock()
		var missing []string
		for _, id := range q.IDs {
			if m.catalog.get(id) == nil {
				missing = append(missing, id)
			}
		}
		m.mu.Unlock()
		for _, id := range missing {
			m.lookupStore(id) // adopts it if the store has it
		}
	}
	var out []*summary
	match := func(s *summary) {
		if (q.Status != "" && s.Status != q.Status) ||
			(q.Since != "" && s.CreateTime < q.Since) ||
			(q.Until != "" && s.CreateTime > q.Until) {
			return
		}
		out = append(out, s)
	}
	m.mu.Lock()
	if len(q.IDs) > 0 {
		seen := map[string]bool{}
		for _, id := range q.IDs {
			if s := m.catalog.get(id); s != nil && !seen[id] {
				seen[id] = true
				match(s)
			}
		}
	} else {
		m.catalog.each(match)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].newer(out[j]) })
	total := len(out)
	if from >= len(out) {
		return []TaskView{}, total
	}
	out = out[from:]
	if size >= 0 && size < len(out) {
		out = out[:size]
	}
	views := make([]TaskView, 0, len(out))
	for _, s := range out {
		m.mu.Lock()
		t := m.tasks[s.ID]
		var v TaskView
		if t != nil {
			v = t.rec.TaskView
		}
		m.mu.Unlock()
		if t == nil {
			if t = m.peekStore(s.ID); t == nil {
				continue // unreadable now: logged
			}
			v = t.rec.TaskView
		}
		views = append(views, v)
	}
	return views, total
}

// ParseTime parses MPC's yyyymmddhhmmss (UTC).
func ParseTime(s string) (time.Time, error) { return time.Parse(timeFormat, s) }
