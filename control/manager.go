// Package control is mpcfs's control plane: it parses MPC encryption-task
// requests, runs tasks (reading playlists, planning outputs), keeps tasks in
// the task store, and tells the FUSE layer which output files exist.
package control

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/cenc"
	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// Config configures a Manager.
type Config struct {
	Store     store.Store
	Region    string          // requests' location must equal it
	SysBucket string          // where tasks are kept (hidden from buckets/)
	Master    *keywrap.Master // wraps task keys at rest
	Log       *log.Logger     // never given a key
	// Tuning: Workers, Refresh, StoreOpTimeout, LookupTimeout,
	// PlanRetries, WarmNext (zero: tuning.Default()).
	Tuning tuning.Tuning
}

// Manager owns every task. It is safe for concurrent use.
type Manager struct {
	cfg   Config
	ctx   context.Context
	stop  context.CancelFunc
	queue chan string
	wg    sync.WaitGroup

	mu    sync.Mutex
	tasks map[string]*task
	// reconciled is closed when the start's check of the index against
	// the records has ended (startupErr: how); load may return before.
	reconciled chan struct{}
	startupErr error
	checkTook  time.Duration       // that check, for the spacing of full refreshes
	responses  map[string]response // request file name -> its 202/400 body
	cancels    []byte              // what control/cancel reads back
	cancelFns  map[string]context.CancelFunc
	seen       map[string]string // responses and unreadable records: task-store key -> ETag last read
	// catalog summarises every task of the store; tasks holds only
	// those loaded (being created, processed, canceled, or asked for).
	catalog catalog
	index   indexState
	// filesHint holds, during a start, the summaries of SUCCEEDED tasks
	// in the index that are older than their record: their outlines.
	filesHint map[string]*summary
	// nextResponses is when a refresh between full ones may list the
	// responses again (syncResponses). Set and read by the start's check,
	// then by the refresher only.
	nextResponses time.Time

	outs *Outputs

	bucketsSeen sync.Map // bucket name -> when the store said it exists
}

// Store layout inside the system bucket.
const (
	tasksPrefix     = "tasks/"
	responsesPrefix = "encryptions/"
	maxCancelLog    = 16 << 10
)

// NewManager loads the task store and starts the workers. Tasks left
// WAITING or PROCESSING by a previous run are processed again: planning only
// reads, so doing it twice is safe.
func NewManager(cfg Config) (*Manager, error) {
	cfg.Tuning = tuning.OrDefault(cfg.Tuning)
	if err := cfg.Tuning.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = log.New(io.Discard, "", 0)
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, ctx: ctx, stop: stop, queue: make(chan string, 1<<16), reconciled: make(chan struct{}),
		tasks: map[string]*task{}, responses: map[string]response{}, cancelFns: map[string]context.CancelFunc{}, seen: map[string]string{}, filesHint: map[string]*summary{}}
	m.outs = newOutputs(cfg.Store, cfg.Log, cfg.Tuning)
	m.outs.loadTask = m.loadServed
	m.outs.readPlan = m.readPlan
	m.outs.saveStale = m.saveStaleByID
	m.index.init()
	if err := m.load(); err != nil {
		stop()
		return nil, err
	}
	for i := 0; i < cfg.Tuning.Workers; i++ {
		m.wg.Add(1)
		go m.worker()
	}
	if cfg.Tuning.Refresh > 0 {
		m.wg.Add(1)
		go m.refresher()
	}
	m.wg.Add(1)
	go m.indexWriter()
	return m, nil
}

// Outputs serves the outputs of the SUCCEEDED tasks.
func (m *Manager) Outputs() *Outputs { return m.outs }

// Tuning is the tuning the Manager runs with.
func (m *Manager) Tuning() tuning.Tuning { return m.cfg.Tuning }

// Close stops the workers; unfinished tasks resume on the next start.
func (m *Manager) Close() {
	m.stop()
	m.wg.Wait()
}

// Create submits a request written to control/encryptions/<name>; it
// returns the body that file then reads back (202 or 400 shape).
func (m *Manager) Create(name string, data []byte) []byte {
	body := m.create(data)
	m.mu.Lock()
	m.responses[name] = response{body: body, size: int64(len(body))}
	m.mu.Unlock()
	if err := m.cfg.Store.Put(m.ctx, m.cfg.SysBucket, responsesPrefix+name, body); err != nil {
		m.cfg.Log.Printf("saving the response of %s: %v", name, err)
	}
	return body
}

func (m *Manager) create(data []byte) []byte {
	params, apiErr := ParseRequest(data, m.cfg.Region)
	if apiErr == nil {
		apiErr = m.checkStore(params)
	}
	if apiErr != nil {
		return apiErr.JSON()
	}
	t, err := m.newTask(params)
	if err != nil {
		return (&APIError{Code: CodeOperationFailed, Msg: err.Error()}).JSON()
	}
	// The id is read before the task is queued: from then on a worker
	// rewrites t.rec (finish), and reading it here would race.
	id := t.rec.TaskID
	m.cfg.Log.Printf("task %s created: %s/%s -> %s/%s (%s)", id, params.Input.Bucket, params.Input.Object, params.Output.Bucket, params.Output.Object, params.Algorithm)
	m.queue <- id
	return createdBody(id)
}

// checkStore makes the checks that need the store: buckets and input.
func (m *Manager) checkStore(p *Params) *APIError {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreOpTimeout)
	defer cancel()
	for _, b := range []struct{ field, name string }{{"input.bucket", p.Input.Bucket}, {"output.bucket", p.Output.Bucket}} {
		if b.name == m.cfg.SysBucket {
			return badRequest("field %q: bucket %q is reserved for mpcfs's task store", b.field, b.name)
		}
		ok, err := m.BucketExists(ctx, b.name)
		if err != nil {
			return &APIError{Code: CodeOperationFailed, Msg: fmt.Sprintf("checking %s %q: %v", b.field, b.name, err)}
		}
		if !ok {
			return badRequest("field %q: bucket %q does not exist", b.field, b.name)
		}
	}
	_, err := m.cfg.Store.Stat(ctx, p.Input.Bucket, p.Input.Object)
	if errors.Is(err, store.ErrNotExist) {
		return &APIError{Code: CodeInputNotExist, Msg: fmt.Sprintf("field \"input.object\": object %q does not exist in bucket %q", p.Input.Object, p.Input.Bucket)}
	}
	if err != nil {
		return &APIError{Code: CodeOperationFailed, Msg: fmt.Sprintf("checking input.object %q: %v", p.Input.Object, err)}
	}
	return nil
}

// BucketSeen reports whether this Manager ever saw the bucket exist: the
// mount shows such a bucket's folder without asking the store again (a
// frozen store must not make a folder the mount knows fail; a bucket
// deleted since lists as empty).
func (m *Manager) BucketSeen(name string) bool {
	_, ok := m.bucketsSeen.Load(name)
	return ok
}

// BucketExists asks the store, remembering a bucket found for
// Tuning.BucketCacheTTL: a create then costs two store round trips fewer.
// A bucket deleted meanwhile is still caught, by planning's reads.
func (m *Manager) BucketExists(ctx context.Context, name string) (bool, error) {
	if at, ok := m.bucketsSeen.Load(name); ok && time.Since(at.(time.Time)) < m.cfg.Tuning.BucketCacheTTL {
		return true, nil
	}
	ok, err := m.cfg.Store.BucketExists(ctx, name)
	if ok && err == nil {
		m.bucketsSeen.Store(name, time.Now())
	}
	return ok, err
}

func (m *Manager) newTask(p *Params) (*task, error) {
	now := time.Now()
	t := &task{key: p.Key, rec: record{
		Created: now.UnixNano(),
		TaskView: TaskView{Status: Waiting, CreateTime: mpcTime(now), Input: p.Input,
			Output: p.Output, OutputFileName: p.Output.FileName, UserData: p.UserData},
		Algorithm: p.Algorithm, KeyURL: p.KeyURL, IV: p.IV, PreviewDuration: p.PreviewDuration,
		MultiDRM: p.MultiDRM, Nonce: newNonce()}}
	if p.MultiDRM != nil {
		kid, err := cenc.KIDFromContentID(p.MultiDRM.ContentID)
		if err != nil {
			return nil, fmt.Errorf("making the KID: %v", err)
		}
		t.rec.KID = cenc.UUIDString(kid)
	}
	for tries := 0; ; tries++ {
		m.addWithNewID(t)
		m.mu.Lock()
		t.rec.SealedKey = m.cfg.Master.Seal(p.Key, t.rec.TaskID)
		rec := t.rec
		m.mu.Unlock()
		// Created only if no record of that id exists (the store's
		// compare-and-swap): an id another mount took, even a moment
		// ago, is never overwritten; a new one is drawn instead.
		etag, err := m.putRec(&rec, "")
		m.mu.Lock()
		if err != nil {
			delete(m.tasks, rec.TaskID)
			m.mu.Unlock()
			if errors.Is(err, store.ErrChanged) && tries < 10 {
				continue
			}
			return nil, fmt.Errorf("could not save the task: %v", err)
		}
		t.etag = etag
		m.syncLocked(t) // WAITING: no outputs to withdraw
		m.mu.Unlock()
		return t, nil
	}
}

// addWithNewID gives t a fresh random 16-digit id, one this mount does not
// know, and adds it. Random ids stay unique across mounts sharing a task
// store without coordination; an id another mount made since the last
// refresh is caught by the create-only save that follows (newTask), which
// draws again: no store round trip here.
func (m *Manager) addWithNewID(t *task) {
	for {
		id := randomID()
		m.mu.Lock()
		if _, dup := m.tasks[id]; !dup && m.catalog.get(id) == nil {
			t.rec.TaskID = id
			m.tasks[id] = t
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

func randomID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(9e15))
	if err != nil {
		panic("control: no randomness: " + err.Error())
	}
	return fmt.Sprint(n.Int64() + 1e15)
}

// newNonce is a task's random CTR nonce: 64 random high bits, low bits 0.
func newNonce() []byte {
	n := make([]byte, 16)
	if _, err := rand.Read(n[:8]); err != nil {
		panic("control: no randomness: " + err.Error())
	}
	return n
}

func (m *Manager) worker() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case id := <-m.queue:
			m.process(id)
		}
	}
}

// process runs one task from WAITING to a final state.
//
// Saving PROCESSING and planning go at once: planning only reads the
// store, and what it makes is kept only if the task did become
// PROCESSING (finish saves the outcome by compare-and-swap after it).
// A task found final instead (canceled meanwhile) stops the planning.
func (m *Manager) process(id string) {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	t := m.claim(id, cancel)
	if t == nil {
		return
	}
	begun := make(chan bool, 1)
	go func() {
		ok := m.begin(t)
		if !ok {
			cancel()
		}
		begun <- ok
	}()
	plan, terr := m.plan(ctx, t)
	if !<-begun {
		m.mu.Lock()
		delete(m.cancelFns, id)
		m.mu.Unlock()
		return
	}
	if m.ctx.Err() != nil {
		return // shutting down: the task stays PROCESSING and resumes on restart
	}
	m.finish(t, plan, terr)
}

// plan builds the task's plan, retrying store failures (MPC.10212:
// unreachable, 5xx...) after each of Tuning.PlanRetries: a store
// restarting should not fail a task. After the last one the task is
// FAILED with the store's reason.
func (m *Manager) plan(ctx context.Context, t *task) (*Plan, *taskError) {
	m.mu.Lock()
	rec := t.rec // buildPlan reads the record outside m.mu
	m.mu.Unlock()
	plan, terr := buildPlan(ctx, m.cfg.Store, &rec, m.cfg.Tuning.PlanReadsAtOnce)
	for _, wait := range m.cfg.Tuning.PlanRetries {
		if terr == nil || terr.code != CodeOperationFailed {
			break
		}
		m.cfg.Log.Printf("task %s: %v; retrying in %v", rec.TaskID, terr, wait)
		select {
		case <-ctx.Done():
			return nil, terr
		case <-time.After(wait):
		}
		plan, terr = buildPlan(ctx, m.cfg.Store, &rec, m.cfg.Tuning.PlanReadsAtOnce)
	}
	return plan, terr
}

// claim returns the loaded task id, registering cancel so that a Cancel
// from now on stops its planning; nil if it is not loaded.
func (m *Manager) claim(id string, cancel context.CancelFunc) *task {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[id]
	if t != nil {
		m.cancelFns[id] = cancel
	}
	return t
}

// begin moves a WAITING task to PROCESSING; false if it is not waiting
// (final here, or in the store: another mount canceled it).
func (m *Manager) begin(t *task) bool {
	m.mu.Lock()
	id := t.rec.TaskID
	m.mu.Unlock()
	changed, err := m.update(t, func(r *record) bool {
		if r.Status.Final() {
			return false
		}
		r.Status = Processing
		return true
	})
	if err != nil {
		m.cfg.Log.Printf("task %s: saving PROCESSING: %v", id, err)
	}
	return changed
}

// finish records a task's outcome, unless it was canceled meanwhile (on
// this mount or, found by the compare-and-swap in update, on another).
// It is saved first, then made visible together with its outputs: whoever
// reads SUCCEEDED can open them.
func (m *Manager) finish(t *task, plan *Plan, terr *taskError) {
	m.mu.Lock()
	id := t.rec.TaskID
	delete(m.cancelFns, id)
	rec := t.rec
	m.mu.Unlock()
	if terr == nil {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.LookupTimeout)
		terr = m.outs.clash(ctx, &rec, plan)
		cancel()
	}
	if terr == nil {
		// The plan is saved before the record says SUCCEEDED: whoever
		// reads SUCCEEDED finds it.
		if err := m.putPlan(id, plan); err != nil {
			terr = failf(CodeOperationFailed, "saving the plan: %v", err)
		} else {
			files := filesOf(id, rec.Output.Object, plan)
			ol := outlineOf(files)
			m.outs.keepFiles(id, files) // this mount's lookups read no plan back
			m.mu.Lock()
			t.outline = &ol // shown once the record says SUCCEEDED
			m.mu.Unlock()
		}
	}
	end := mpcTime(time.Now())
	changed, err := m.update(t, func(r *record) bool {
		if r.Status != Processing {
			return false // canceled meanwhile: keep that
		}
		r.EndTime = end
		if terr != nil {
			r.Status, r.Description = Failed, terr.Error()
		} else {
			r.Status, r.PlanKey, r.Plan, r.Description = Succeeded, planKey(id), nil, fmt.Sprintf("%d output files", len(plan.Files))
			if plan.Note != "" {
				r.Description += "; " + plan.Note
			}
		}
		rec = *r
		return true
	})
	switch {
	case !changed && err == nil:
		m.cfg.Log.Printf("task %s was canceled while processing", id)
	case !changed:
		m.cfg.Log.Printf("task %s: saving its outcome: %v", id, err)
	default:
		m.cfg.Log.Printf("task %s %s: %s", id, rec.Status, rec.Description)
		if err != nil {
			m.cfg.Log.Printf("task %s: saving %s: %v", id, rec.Status, err)
		}
		m.mu.Lock()
		key := t.key
		m.mu.Unlock()
		if rec.Status == Succeeded && key != nil {
			// This mount has what serving the outputs needs: the first
			// open of one (a player or CDN often asks right after the
			// task SUCCEEDED) need not read the record and plan back.
			m.outs.keepPlan(&servedTask{rec: rec, key: key, plan: plan})
		}
	}
	m.release(t)
}

// release unloads a final task: the catalogue keeps its summary, and the
// record is read again if the task is asked for (a mount that creates
// many tasks does not keep every record).
func (m *Manager) release(t *task) {
	t.mu.Lock() // no update of it running
	defer t.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	id := t.rec.TaskID
	if m.tasks[id] == t && t.rec.Status.Final() && m.cancelFns[id] == nil && !t.withdrawn {
		delete(m.tasks, id)
	}
}

// Cancel cancels a task: a waiting or running one stops, a SUCCEEDED one
// withdraws its outputs. FAILED and CANCELED tasks cannot be canceled. A
// task of another mount not seen here yet is read from the store. The
// cancel is saved by compare-and-swap (update): once it is answered
// success, no mount's outcome overwrites it.
func (m *Manager) Cancel(id string) *APIError {
	m.mu.Lock()
	t := m.tasks[id]
	m.mu.Unlock()
	if t == nil {
		t = m.lookupStore(id)
	}
	if t == nil {
		return &APIError{Code: CodeTaskNotExist, Msg: fmt.Sprintf("task %q does not exist", id)}
	}
	m.mu.Lock()
	if fn := m.cancelFns[id]; fn != nil {
		fn() // stop planning now; finish then sees CANCELED and keeps it
	}
	if st := t.rec.Status; st == Failed || st == Canceled {
		m.mu.Unlock()
		return &APIError{Code: CodeOperationFailed, Msg: fmt.Sprintf("task %s is already %s", id, st)}
	}
	// Outputs go first, and the kernel forgets their names, so whoever
	// reads CANCELED no longer finds them.
	t.withdrawn = true
	gone := m.outs.set(m.catalog.get(id), nil)
	m.mu.Unlock()
	m.outs.notify(gone)

	var refused Status
	end := mpcTime(time.Now())
	changed, err := m.update(t, func(r *record) bool {
		if r.Status == Failed || r.Status == Canceled {
			refused = r.Status // decided in the store meanwhile
			return false
		}
		r.Status, r.EndTime, r.Plan, r.PlanKey = Canceled, end, nil, ""
		r.Description = "canceled by request"
		return true
	})
	if !changed {
		m.mu.Lock()
		if t.rec.Status != Canceled {
			t.withdrawn = false // not canceled after all: serve its outputs again
		}
		gone := m.syncLocked(t)
		m.mu.Unlock()
		m.outs.notify(gone)
		if err == nil {
			return &APIError{Code: CodeOperationFailed, Msg: fmt.Sprintf("task %s is already %s", id, refused)}
		}
		return &APIError{Code: CodeOperationFailed, Msg: fmt.Sprintf("task %s could not be canceled: %v", id, err)}
	}
	m.cfg.Log.Printf("task %s CANCELED", id)
	if err == nil {
		m.deletePlan(id)
	}
	if err != nil {
		return &APIError{Code: CodeOperationFailed, Msg: fmt.Sprintf("task %s canceled but not saved: %v", id, err)}
	}
	return nil
}

// CancelLines handles text written to control/cancel: one task id a line.
// It returns the first error; every line's result is kept for reading back.
func (m *Manager) CancelLines(text string) *APIError {
	var first *APIError
	for _, line := range strings.Split(text, "\n") {
		id := strings.TrimSpace(line)
		if id == "" {
			continue
		}
		err := m.Cancel(id)
		if err != nil && first == nil {
			first = err
		}
		m.logCancel(id, err)
	}
	return first
}

func (m *Manager) logCancel(id string, apiErr *APIError) {
	entry := map[string]string{"task_id": id, "status": string(Canceled)}
	if apiErr != nil {
		entry = map[string]string{"task_id": id, "error_code": apiErr.Code, "error_msg": apiErr.Msg}
	}
	line, _ := json.Marshal(entry)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cancels = append(m.cancels, append(line, '\n')...)
	if len(m.cancels) > maxCancelLog {
		m.cancels = m.cancels[len(m.cancels)-maxCancelLog/2:]
	}
}

// CancelLog is what reading control/cancel returns: one JSON line per
// recent cancel, newest last.
func (m *Manager) CancelLog() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.cancels...)
}

// response is a control/encryptions body. body nil: saved by another
// mount (or before this start) and not read yet; size is its listed size.
type response struct {
	body []byte
	size int64
}

// ResponseSize is the size of control/encryptions/<name> without reading
// it: a listing of the folder (ls, which looks up every name) costs no
// store request per response.
func (m *Manager) ResponseSize(name string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.responses[name]
	return r.size, ok
}

// Response returns the body of control/encryptions/<name>: ok false if
// there is no such response, err if it could not be read from the task
// store (a response not saved by this run is read when first asked for).
func (m *Manager) Response(name string) (body []byte, ok bool, err error) {
	m.mu.Lock()
	r, ok := m.responses[name]
	m.mu.Unlock()
	if !ok || r.body != nil {
		return r.body, ok, nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Tuning.StoreTimeout)
	defer cancel()
	b, err := m.readSys(ctx, responsesPrefix+name)
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, still := m.responses[name]
	switch {
	case errors.Is(err, store.ErrNotExist):
		if still && cur.body == nil {
			delete(m.responses, name) // deleted by another mount meanwhile
		}
		return nil, false, nil
	case err != nil:
		return nil, true, fmt.Errorf("reading the response %s: %w", name, err)
	case !still:
		return nil, false, nil // removed here meanwhile
	case cur.body != nil:
		return cur.body, true, nil // saved here meanwhile
	}
	m.responses[name] = response{body: b, size: int64(len(b))}
	return b, true, nil
}

// ResponseNames lists control/encryptions/.
func (m *Manager) ResponseNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return sortedKeys(m.responses)
}

// RemoveResponse forgets a request file; its task is kept.
func (m *Manager) RemoveResponse(name string) bool {
	m.mu.Lock()
	_, ok := m.responses[name]
	delete(m.responses, name)
	m.mu.Unlock()
	if ok {
		if err := m.cfg.Store.Delete(m.ctx, m.cfg.SysBucket, responsesPrefix+name); err != nil {
			m.cfg.Log.Printf("removing %s: %v", name, err)
		}
	}
	return ok
}

// TaskJSON returns control/tasks/<id>.json. A task this mount does not
// know yet is looked for in the task store: another mount may have just
// created it.
func (m *Manager) TaskJSON(id string) ([]byte, bool) {
	m.mu.Lock()
	t, ok := m.tasks[id]
	if ok {
		defer m.mu.Unlock()
		return t.viewJSON(), true
	}
	known := m.catalog.get(id) != nil
	m.mu.Unlock()
	if known {
		// Read, not loaded: listing every task's file must not load
		// every record.
		if t := m.peekStore(id); t != nil {
			return t.viewJSON(), true
		}
	}
	if t = m.lookupStore(id); t == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return t.viewJSON(), true
}

// TaskCount is how many tasks the catalogue holds.
func (m *Manager) TaskCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.catalog.n
}

// TaskIDs lists control/tasks/, sorted.
func (m *Manager) TaskIDs() []string {
	m.mu.Lock()
	ids := make([]string, 0, m.catalog.n)
	m.catalog.each(func(s *summary) { ids = append(ids, s.ID) })
	m.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// Status returns a task's status ("" if unknown); handy for tests and tools.
func (m *Manager) Status(id string) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.catalog.get(id); s != nil {
		return s.Status
	}
	return ""
}

func sortedKeys[V any](mp map[string]V) []string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
