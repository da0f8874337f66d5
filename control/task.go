package control

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/mpcfs/mpcfs/crypto"
)

// Status is a task's state: WAITING -> PROCESSING -> SUCCEEDED | FAILED,
// or CANCELED by a cancel request.
type Status string

// Task statuses, as the MPC API spells them.
const (
	Waiting    Status = "WAITING"
	Processing Status = "PROCESSING"
	Succeeded  Status = "SUCCEEDED"
	Failed     Status = "FAILED"
	Canceled   Status = "CANCELED"
)

// Final reports whether the status can no longer change by processing.
func (s Status) Final() bool { return s == Succeeded || s == Failed || s == Canceled }

// TaskView is what control/tasks/<id>.json shows: the MPC EachEncryptRsp
// shape. It never holds the key.
type TaskView struct {
	TaskID         string   `json:"task_id"`
	Status         Status   `json:"status"`
	CreateTime     string   `json:"create_time"`
	EndTime        string   `json:"end_time"`
	Input          Location `json:"input"`
	Output         Location `json:"output"`
	OutputFileName string   `json:"output_file_name"`
	UserData       string   `json:"user_data"`
	Description    string   `json:"description"`
	// KID is the Common Encryption key ID (multidrm tasks), a UUID: not
	// secret, DRM providers are told it with the key.
	KID string `json:"kid,omitempty"`
}

// record is a task as the task store keeps it. SealedKey is the content key
// wrapped by the master key (keywrap); the clear key exists only in memory.
type record struct {
	TaskView
	Algorithm       crypto.Algorithm `json:"algorithm"`
	KeyURL          string           `json:"key_url"`
	IV              []byte           `json:"iv,omitempty"` // not secret: it is written in the playlists
	Nonce           []byte           `json:"ctr_nonce,omitempty"`
	PreviewDuration int              `json:"preview_duration,omitempty"`
	MultiDRM        *MultiDRM        `json:"multidrm,omitempty"`
	SealedKey       string           `json:"sealed_key"`
	// Created orders tasks finer than CreateTime's seconds, so the newer
	// of two tasks writing one output path wins even within a second.
	Created int64 `json:"created_unix_nano,omitempty"`
	// PlanKey names the object (in the system bucket) holding a
	// SUCCEEDED task's plan. Records saved before plans were kept apart
	// hold it in Plan instead; the next update of such a record moves it.
	PlanKey string `json:"plan_key,omitempty"`
	Plan    *Plan  `json:"plan,omitempty"`
}

// task is a record plus its unwrapped key, held by the Manager.
type task struct {
	rec record
	key []byte
	// mu serializes a task's state changes with their saves, so the task
	// store never ends on an older state than memory.
	mu sync.Mutex
	// etag is the ETag of the record in the task store as this mount
	// last read or wrote it (under Manager.mu): updates are conditioned on
	// it. "" before the first save.
	etag string
	// withdrawn hides a SUCCEEDED task's outputs while it is being canceled.
	withdrawn bool
	// outline outlines a SUCCEEDED task's outputs (under Manager.mu).
	outline *outline
}

// timeFormat is MPC's yyyymmddhhmmss, in UTC.
const timeFormat = "20060102150405"

func mpcTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// viewJSON renders the query body.
func (t *task) viewJSON() []byte {
	b, _ := json.MarshalIndent(t.rec.TaskView, "", "  ")
	return append(b, '\n')
}
