// Package tuning holds every knob of mpcfs's read path and task handling in
// one struct, with its default and the reason for it, the way rclone's
// vfscommon.Options and mountpoint-s3's PrefetcherConfig do. Nothing else
// in mpcfs keeps a sizing or timing constant of its own: the layers take
// their part of a Tuning (crypto.SetTuning, fs.Options.Tuning,
// control.Config.Tuning), so that tests and the bench can change one
// field and see what it does.
//
// Limits of the MPC API and of input (request and playlist sizes, output
// counts) are not tuning: they are rules, and stay beside the code that
// enforces them.
package tuning

import (
	"errors"
	"fmt"
	"time"
)

// Tuning is the whole set. The zero value is not usable: start from
// Default() and change fields.
type Tuning struct {
	// ---- crypto: source windows (one ranged GET each) ----

	// FirstWindow is the least a source window grows to after a seek's
	// first one (which covers just its request, so a random read fetches
	// no more than it needs).
	FirstWindow int64
	// MaxWindow is the largest source window: a sequential stream opens
	// windows this size (few GETs per segment; MinIO and S3 pay per
	// request) and no GET is unbounded.
	MaxWindow int64

	// ---- crypto: streams, chunks and what a Reader holds ----

	// ChunkSize is the unit a stream encrypts and hands to readers; a
	// multiple of 16. A producer holds one being made and one queued.
	ChunkSize int
	// MaxHeldChunks bounds the chunks a Reader keeps for kernel read
	// requests that arrive out of order (go-fuse serves each request in
	// its own goroutine); in order only the newest is kept. A request up
	// to SkipAhead past the stream's end makes the stream skip to it, and
	// the chunks skipped over wait for the requests still on their way:
	// SkipAhead plus one 1 MiB request (which straddles three 512 KiB
	// chunks), plus the newest, is eleven; twelve leave one spare. A
	// request behind the stream whose chunk is gone anyway is read on its
	// own (crypto Reader.aside).
	MaxHeldChunks int
	// SkipAhead is how far a forward jump may go and still continue a
	// read-ahead stream (keeping what lies between, within MaxHeldChunks)
	// instead of seeking. A 128 KiB reader's kernel has up to four 1 MiB
	// read-ahead requests out at once, and the newest may be served
	// first, three requests past the stream's end: a seek there would
	// restart the stream (a round trip at real S3 latency) and leave the
	// requests between to be read aside, one round trip each.
	SkipAhead int64
	// IdleSkip is the same for a stream that is not reading ahead (after
	// a seek): smaller, and done synchronously.
	IdleSkip int64
	// LateBehind is how far behind a stream's end a request may fall and
	// still be taken as a late kernel request (read aside, the stream left
	// running) rather than a seek back: the requests in flight (1 MiB
	// each) plus what the producer has made ahead.
	LateBehind int64
	// BufferMemory bounds the bytes of all chunk buffers together: the
	// chunks streams make and Readers hold, warm streams' chunks, and the
	// replies still being written from them. They live outside the Go
	// heap (so the GC never scans or paces on them) and are counted here
	// instead of by MemoryLimit. When it is reached, a chunk waits for a
	// buffer: warm streams yield first (they keep a quarter of it free
	// and are stopped if a reader waits), then the chunks Readers hold
	// for late requests. Rounded down to whole chunks; must hold
	// WarmBudget and some to spare.
	BufferMemory int64
	// CheckpointEvery is the CBC checkpoint spacing: the most a read
	// re-encrypts once its part has been read past that point. 16 bytes
	// of memory per interval of each output read.
	CheckpointEvery int64

	// ---- crypto: warm streams (segments encrypted ahead of their reader) ----

	// WarmBudget is the bytes of chunks all warm streams together may
	// hold beyond their own queue slot; rounded down to whole chunks.
	WarmBudget int64
	// MaxWarmStreams bounds the warm streams held at once.
	MaxWarmStreams int
	// WarmTTL stops a warm stream nobody has adopted: long enough for a
	// player reading 10 s segments in real time to adopt the second one
	// ahead.
	WarmTTL time.Duration
	// WarmEvictAfter: when MaxWarmStreams are held, a new warm stream
	// replaces the oldest one if that has waited this long for its
	// reader (0: never). Readers that stopped would otherwise keep every
	// place (and the warm budget) for WarmTTL; a fast reader adopts its
	// warm streams well within it.
	WarmEvictAfter time.Duration
	// LaneSlice is how much of each CBC chain one step of the lane engine
	// encrypts; LaneLinger how long the engine waits for a second chain
	// to interleave before it encrypts one alone (waiting costs no CPU).
	LaneSlice  int
	LaneLinger time.Duration
	// LaneGateWait is how long the engine may hold a warm stream's chunk
	// (made ahead of its reader) for company before it encrypts it alone:
	// a lane costs as much alone as with three others, and such chunks
	// come one at a time, as the reader frees the ahead budget. A reader
	// that comes to wait for one ends its wait at once. 0: never held.
	LaneGateWait time.Duration

	// ---- fs: the FUSE layer ----

	// EntryTTL is how long the kernel may trust a name or attributes of
	// store objects and control files: short, so new objects and outputs
	// show up at once.
	EntryTTL time.Duration
	// OutputEntryTTL is the same for task outputs: they never change
	// under their inode (content-derived), and withdrawn ones are
	// invalidated at once, so their entries can live long.
	OutputEntryTTL time.Duration
	// ListingTTL is how long a bucket folder's listing answers the
	// lookups of the names it holds: readdirplus (ls, ls -l, find) looks
	// up every entry right after the listing, one at a time, and without
	// it each would be a HEAD (a round trip each on a store far away).
	// Only names the listing holds are answered; any other name still
	// asks the store, so a new object is never hidden. 0: never.
	ListingTTL time.Duration
	// FolderAttrsMax: a listing with more sub-folders than this gives
	// the kernel their names without attributes (fs.folderHandle). Each
	// folder given with attributes is a node the kernel keeps (~600 B of
	// the daemon's heap) until it forgets it: a plain ls of a catalogue's
	// 100,000 title folders raised the RSS by ~50 MB. Without them, ls
	// -l of such a folder asks for each one (20,000: 1.3 s against 0.2).
	FolderAttrsMax int
	// StoreTimeout bounds the store requests of one lookup, getattr,
	// readdir or open, so a store that went away or froze gives EIO
	// within seconds instead of a hung ls (they are not cut short by a
	// signal to the caller: fs metaContext).
	StoreTimeout time.Duration
	// WarmAfter: a segment read in sequence past this many bytes is being
	// played or copied, not probed; the next segments are warmed then.
	// WarmLead warms them from this far before the end of a short one.
	WarmAfter int64
	WarmLead  int64
	// WarmNext is how many segments after the one being read are warmed.
	WarmNext int
	// ReadAheadKB is the kernel read-ahead asked for on the mount (root
	// only): with the kernel's 128 a 1 MiB read() becomes eight FUSE
	// requests. 0 keeps the kernel's.
	ReadAheadKB int

	// ---- httpapi: the HTTP origin ----

	// OriginStreams is how many segment responses the origin streams at
	// once (0: no bound); OriginQueueWait how long one more waits for its
	// turn before it is streamed anyway. Each stream holds a few chunks
	// (ChunkSize): with many clients at once their buffers would push the
	// heap past MemoryLimit and the GC would take the CPU the cipher
	// needs, while a few streams already keep the cores busy. The wait is
	// bounded so that clients that read slowly delay others, never stop
	// them.
	OriginStreams   int
	OriginQueueWait time.Duration

	// ---- control: tasks and the task store ----

	// Refresh is how often the task store is re-read for other mounts'
	// changes (< 0: never): the index shards that changed.
	Refresh time.Duration
	// FullRefresh is how often a refresh lists every task record instead,
	// finding changes whose index shard another mount never wrote (it was
	// killed in between).
	FullRefresh time.Duration
	// FullRefreshShare is the most of the time full refreshes may take:
	// after one that took d, the next waits at least d/FullRefreshShare.
	FullRefreshShare float64
	// StoreOpTimeout bounds one task-store write or a creation's store
	// checks.
	StoreOpTimeout time.Duration
	// LookupTimeout bounds reading one task from the store when an
	// unknown id is asked for.
	LookupTimeout time.Duration
	// PlanRetries are the waits before planning is retried after a store
	// failure; then the task FAILS with the reason.
	PlanRetries []time.Duration
	// PlanReadsAtOnce is how many playlists and folder listings one
	// task's planning asks the store for at once: a master's variants
	// are read together, so a task waits for two rounds of reads on a
	// store far away, not one per variant. 0: one at a time.
	PlanReadsAtOnce int
	// Workers is how many tasks are planned at once.
	Workers int
	// BucketCacheTTL is how long a creation trusts that a bucket it saw
	// exists (two store round trips fewer per create; a bucket deleted
	// meanwhile is caught by planning's reads).
	BucketCacheTTL time.Duration
	// PlanCache is how many tasks' plans are kept loaded for serving
	// their outputs (least recently used dropped first); a plan is read
	// from the task store when one of its outputs is first looked up (with
	// its file list) or opened.
	PlanCache int
	// FileListCache bounds the output file lists (names, sizes, inode
	// numbers; about 50 bytes a file) kept loaded, in files: the
	// catalogue holds no names (docs/scale.md), so a task's list is read
	// with its plan when a lookup or listing first needs it. 200,000
	// files are about 10 MB: 4,600 titles of 43 outputs.
	FileListCache int
	// OutputsKept is how many opened segment outputs keep their shared
	// state (key schedule, CBC checkpoints: about 1 KB each) between
	// opens; beyond it, those nobody reads or warms are dropped (a later
	// open makes them again). Without a bound a mount serving a catalogue
	// kept one per segment ever opened.
	OutputsKept int
	// Speculations bounds the source GETs started ahead of their plan:
	// the first lookup or open of a segment output whose task's plan is
	// not loaded starts the GET of the source its name most likely comes
	// from at once, beside the reads of the task's record and plan (which
	// it would otherwise wait for: a round trip at S3 latency). Used only
	// when the plan confirms the object and its ETag. Listings and
	// lookups of tasks already loaded never start one, and at most this
	// many wait at once; 0 turns speculation off.
	Speculations int
	// SpeculationHold is how long a speculative GET waits, from its start
	// and again from its file's open, for the file's first read before it
	// is closed (a reader normally reads at once; a lookup or open without
	// a read must not hold a connection).
	SpeculationHold time.Duration
	// IndexDelay is how long after a task changes its index shard is
	// written, so a burst of changes writes each shard once.
	IndexDelay time.Duration
	// StartupReaders is how many task-store reads a mount start (index
	// shards, changed records) makes at once: 1,000 shards on a store 20
	// ms away take 2.5 s eight at a time, 0.6 s at 32.
	StartupReaders int
	// StartupWait bounds how long a start waits for its check of the
	// index shards against the task records (their listing: a page per
	// 1,000 records, seconds at 100,000 on a cold store) before it
	// mounts anyway, serving what the shards said while the check goes
	// on. 0: mount as soon as the shards are read.
	StartupWait time.Duration

	// ---- the daemon ----

	// MemoryLimit is the daemon's memory target: the chunk buffers
	// (BufferMemory) and the Go heap together. The heap's soft limit is
	// what the buffers may take leaves of it (HeapLimit; GOMEMLIMIT
	// overrides it): with Go's default pacing many requests let RSS grow
	// well past what is live. Fixed, not following the buffers mapped at
	// the time: a heap grown into their room while they were idle is not
	// given back to the system as fast as readers map them again.
	MemoryLimit int64
	// HeapPerTask is the room the heap's soft limit gets on top of
	// HeapLimit for each task in the catalogue (whose summaries stay live:
	// about 400 bytes a task), so a large catalogue does not leave the GC
	// running back to back under a limit set for readers.
	HeapPerTask int64
}

// Default returns the defaults mpcfs runs with.
func Default() Tuning {
	return Tuning{
		FirstWindow:      1 << 20,
		MaxWindow:        16 << 20,
		ChunkSize:        512 << 10,
		MaxHeldChunks:    12,
		SkipAhead:        4 << 20,
		IdleSkip:         256 << 10,
		LateBehind:       4 << 20,
		CheckpointEvery:  64 << 10,
		BufferMemory:     40 << 20,
		WarmBudget:       24 << 20,
		MaxWarmStreams:   8,
		WarmTTL:          30 * time.Second,
		WarmEvictAfter:   500 * time.Millisecond,
		LaneSlice:        64 << 10,
		LaneLinger:       300 * time.Microsecond,
		LaneGateWait:     10 * time.Millisecond,
		EntryTTL:         time.Second,
		OutputEntryTTL:   time.Hour,
		ListingTTL:       5 * time.Second,
		FolderAttrsMax:   1000,
		StoreTimeout:     5 * time.Second,
		WarmAfter:        1 << 20,
		WarmLead:         4 << 20,
		WarmNext:         4,
		ReadAheadKB:      1024,
		OriginStreams:    16,
		OriginQueueWait:  time.Second,
		Refresh:          2 * time.Second,
		FullRefresh:      time.Minute,
		FullRefreshShare: 0.1,
		StoreOpTimeout:   30 * time.Second,
		LookupTimeout:    10 * time.Second,
		PlanRetries:      []time.Duration{time.Second, 3 * time.Second},
		Workers:          2,
		BucketCacheTTL:   10 * time.Second,
		PlanReadsAtOnce:  8,
		PlanCache:        256,
		FileListCache:    200000,
		OutputsKept:      4096,
		Speculations:     8,
		SpeculationHold:  time.Second,
		IndexDelay:       200 * time.Millisecond,
		StartupReaders:   32,
		StartupWait:      time.Second,
		MemoryLimit:      88 << 20,
		HeapPerTask:      600,
	}
}

// Validate reports the first field that cannot work.
func (t Tuning) Validate() error {
	var errs []error
	check := func(ok bool, field, why string) {
		if !ok {
			errs = append(errs, fmt.Errorf("tuning: %s %s", field, why))
		}
	}
	check(t.FirstWindow >= 16, "FirstWindow", "must be at least 16 bytes")
	check(t.MaxWindow >= t.FirstWindow, "MaxWindow", "must be at least FirstWindow")
	check(t.ChunkSize >= 16 && t.ChunkSize%16 == 0, "ChunkSize", "must be a positive multiple of 16")
	check(t.MaxHeldChunks >= 1, "MaxHeldChunks", "must be at least 1")
	check(t.SkipAhead >= 0 && t.IdleSkip >= 0 && t.LateBehind >= 0, "SkipAhead/IdleSkip/LateBehind", "must be >= 0")
	check(t.CheckpointEvery >= 16 && t.CheckpointEvery%16 == 0, "CheckpointEvery", "must be a positive multiple of 16")
	check(t.WarmBudget >= 0 && t.MaxWarmStreams >= 0, "WarmBudget/MaxWarmStreams", "must be >= 0")
	check(t.ChunkSize <= 0 || t.BufferMemory >= t.WarmBudget+int64(minSpareChunks*t.ChunkSize), "BufferMemory",
		fmt.Sprintf("must hold WarmBudget and %d chunks more", minSpareChunks))
	check(t.MemoryLimit <= 0 || t.MemoryLimit > t.BufferMemory, "MemoryLimit", "must be more than BufferMemory (or 0: no limit)")
	check(t.WarmTTL > 0, "WarmTTL", "must be > 0")
	check(t.HeapPerTask >= 0, "HeapPerTask", "must be >= 0")
	check(t.WarmEvictAfter >= 0 && t.ListingTTL >= 0 && t.FolderAttrsMax >= 0, "WarmEvictAfter/ListingTTL/FolderAttrsMax", "must be >= 0")
	check(t.LaneSlice >= 16 && t.LaneSlice%16 == 0, "LaneSlice", "must be a positive multiple of 16")
	check(t.LaneLinger >= 0 && t.LaneGateWait >= 0, "LaneLinger/LaneGateWait", "must be >= 0")
	check(t.StoreTimeout > 0 && t.StoreOpTimeout > 0 && t.LookupTimeout > 0, "StoreTimeout/StoreOpTimeout/LookupTimeout", "must be > 0")
	check(t.Workers >= 1, "Workers", "must be at least 1")
	check(t.FullRefreshShare > 0 && t.FullRefreshShare <= 1, "FullRefreshShare", "must be in (0, 1]")
	check(t.PlanReadsAtOnce >= 0, "PlanReadsAtOnce", "must be >= 0")
	check(t.PlanCache >= 1 && t.StartupReaders >= 1 && t.FileListCache >= 1 && t.OutputsKept >= 1, "PlanCache/StartupReaders/FileListCache/OutputsKept", "must be at least 1")
	check(t.IndexDelay >= 0 && t.StartupWait >= 0, "IndexDelay/StartupWait", "must be >= 0")
	check(t.Speculations >= 0 && t.SpeculationHold > 0, "Speculations/SpeculationHold", "must be >= 0 and > 0")
	check(t.WarmNext >= 0 && t.ReadAheadKB >= 0, "WarmNext/ReadAheadKB", "must be >= 0")
	check(t.OriginStreams >= 0 && t.OriginQueueWait >= 0, "OriginStreams/OriginQueueWait", "must be >= 0")
	return errors.Join(errs...)
}

// minSpareChunks is the least BufferMemory holds beyond WarmBudget, in
// chunks: a few readers' own chunks (one being made, one queued, one
// held) and the replies written from them.
const minSpareChunks = 8

// HeapLimit is the Go heap's soft limit: what MemoryLimit leaves beside
// BufferMemory (0: no limit).
func (t Tuning) HeapLimit() int64 {
	if t.MemoryLimit <= 0 {
		return 0
	}
	return t.MemoryLimit - t.BufferMemory
}

// OrDefault returns t, or Default() when t is the zero Tuning (a Config
// or Options that did not set one).
func OrDefault(t Tuning) Tuning {
	if t.ChunkSize == 0 && t.MaxWindow == 0 && t.Workers == 0 {
		return Default()
	}
	return t
}
