package crypto

import (
	"bytes"
	"context"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"math/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/tuning"
)

// patientJob is a chunk of random plaintext for the lane engine with the
// stdlib's CBC ciphertext to expect.
type patientJob struct {
	j    *laneJob
	want []byte
	done chan struct{}
}

func newPatientJob(t *testing.T, seed int64, size int, patient bool, wanted *atomic.Bool) *patientJob {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	key, iv := randBytes(r, 16), randBytes(r, 16)
	var rk [176]byte
	expandKey128(&rk, key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	plain := randBytes(r, size)
	want := make([]byte, size)
	stdcipher.NewCBCEncrypter(block, iv).CryptBlocks(want, plain)
	return &patientJob{j: &laneJob{rk: &rk, chain: [16]byte(iv), buf: plain, patient: patient, wanted: wanted},
		want: want, done: make(chan struct{})}
}

// start hands the job to the engine from its own goroutine, as a producer does.
func (p *patientJob) start() {
	buf := p.j.buf
	go func() {
		encryptLanes(p.j)
		p.j.buf = buf
		close(p.done)
	}()
}

func (p *patientJob) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *patientJob) check(t *testing.T, what string) {
	t.Helper()
	waitFor(t, what, p.finished)
	if !bytes.Equal(p.j.buf, p.want) {
		t.Fatalf("%s: ciphertext differs from crypto/cipher CBC", what)
	}
}

func laneDelta(before [maxLanes]int64) [maxLanes]int64 {
	after := LaneStats()
	for i := range after {
		after[i] -= before[i]
	}
	return after
}

// TestPatientJobsWaitForCompany: a warm stream's chunk (patient) is not
// encrypted alone while it may wait; four of them go together, in steps
// of four lanes, each chain right.
func TestPatientJobsWaitForCompany(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	withTuning(t, func(tu *tuning.Tuning) { tu.LaneGateWait = time.Hour })
	const size = 256 << 10
	before := LaneStats()
	jobs := []*patientJob{newPatientJob(t, 1, size, true, nil)}
	jobs[0].start()
	time.Sleep(50 * time.Millisecond)
	if jobs[0].finished() {
		t.Fatal("a patient chunk alone was encrypted at once, without company")
	}
	for i := range 3 {
		jobs = append(jobs, newPatientJob(t, int64(2+i), size, true, nil))
		jobs[i+1].start()
	}
	for i, p := range jobs {
		p.check(t, "patient chunk "+string(rune('0'+i)))
	}
	if d := laneDelta(before); d[3] != 4*size || d[0]+d[1]+d[2] != 0 {
		t.Fatalf("lane bytes by step width %v, want all %d in steps of four", d, 4*size)
	}
}

// TestPatientJobGoesWhenWanted: a reader coming to wait for a patient
// chunk (wanted, and a poke) ends its wait.
func TestPatientJobGoesWhenWanted(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	withTuning(t, func(tu *tuning.Tuning) { tu.LaneGateWait = time.Hour })
	var wanted atomic.Bool
	p := newPatientJob(t, 7, 128<<10, true, &wanted)
	p.start()
	time.Sleep(20 * time.Millisecond)
	if p.finished() {
		t.Fatal("a patient chunk nobody wants was encrypted alone at once")
	}
	wanted.Store(true)
	pokeLanes()
	p.check(t, "the wanted chunk")
}

// TestPatientJobJoinsImpatient: a patient chunk rides along with a chunk
// a reader waits for (impatient): one step of two lanes, not two steps.
func TestPatientJobJoinsImpatient(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	withTuning(t, func(tu *tuning.Tuning) { tu.LaneGateWait = time.Hour; tu.LaneLinger = 0 })
	const size = 64 << 10 // one slice
	before := LaneStats()
	patient := newPatientJob(t, 8, size, true, nil)
	patient.start()
	time.Sleep(20 * time.Millisecond)
	reader := newPatientJob(t, 9, size, false, nil)
	reader.start()
	reader.check(t, "the reader's chunk")
	patient.check(t, "the patient chunk")
	if d := laneDelta(before); d[1] != 2*size || d[0] != 0 {
		t.Fatalf("lane bytes by step width %v, want %d in one step of two", d, 2*size)
	}
}

// TestPatientJobWaitIsBounded: with nobody to join, a patient chunk goes
// alone after LaneGateWait; with LaneGateWait 0 (the negative control of
// TestPatientJobsWaitForCompany) it goes at once.
func TestPatientJobWaitIsBounded(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	for _, wait := range []time.Duration{30 * time.Millisecond, 0} {
		withTuning(t, func(tu *tuning.Tuning) { tu.LaneGateWait = wait })
		before := LaneStats()
		start := time.Now()
		p := newPatientJob(t, 10, 64<<10, true, nil)
		p.start()
		p.check(t, "a patient chunk alone")
		if took := time.Since(start); took < wait {
			t.Fatalf("LaneGateWait %v: the chunk went alone after %v", wait, took)
		}
		if d := laneDelta(before); d[0] != 64<<10 {
			t.Fatalf("LaneGateWait %v: lane bytes by step width %v, want one lane", wait, d)
		}
	}
}

// benchPlaylist reads segs Files of segSize one after another with 1 MiB
// reads, warming the next warmNext once 1 MiB of one is read (what the
// FUSE layer does for a playlist's segments), and reports the share of
// CBC bytes the lane engine encrypted in steps of 1 and of 4 lanes.
func benchPlaylist(b *testing.B, gate time.Duration) {
	withTuning(b, func(t *tuning.Tuning) { t.LaneGateWait = gate })
	const segs, segSize, warmNext, req = 24, 10 << 20, 4, 1 << 20
	data := randBytes(rand.New(rand.NewSource(3)), segSize)
	files := make([]*File, segs)
	for i := range files {
		src := &memSource{data: data, plain: true}
		files[i] = newTestFile(b, Part{Src: src.open, PlainSize: segSize, Alg: AES128CBC, Key: testKey, IV: testIV})
	}
	buf := make([]byte, req)
	ctx := context.Background()
	before := LaneStats()
	b.SetBytes(segs * segSize)
	for b.Loop() {
		for i, f := range files {
			rd := f.NewReader()
			for off := int64(0); off < f.Size(); off += req {
				if _, err := rd.ReadAt(ctx, buf, off); err != nil && off+req < f.Size() {
					b.Fatal(err)
				}
				if off == req {
					for _, g := range files[i+1 : min(i+1+warmNext, segs)] {
						g.Warm()
					}
				}
			}
			rd.Close()
		}
	}
	after := LaneStats()
	var total float64
	for i := range after {
		total += float64(after[i] - before[i])
	}
	if total > 0 {
		b.ReportMetric(float64(after[0]-before[0])/total, "1-lane-share")
		b.ReportMetric(float64(after[3]-before[3])/total, "4-lane-share")
	}
}

func BenchmarkPlaylistGated(b *testing.B)   { benchPlaylist(b, tuning.Default().LaneGateWait) }
func BenchmarkPlaylistUngated(b *testing.B) { benchPlaylist(b, 0) }

// TestWarmReaderEndsPatientWait: the chunks of a warm stream are patient,
// but once a reader adopts the stream they are not held for company (nor
// when the stream is stopped), even when no other stream could come: the
// reads finish with openssl's ciphertext long before LaneGateWait.
func TestWarmReaderEndsPatientWait(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	withTuning(t, func(tu *tuning.Tuning) { tu.LaneGateWait = time.Hour })
	r := rand.New(rand.NewSource(31))
	f, src := onePart(t, r, AES128CBC, 6<<20+100, testIV)
	f.Warm()
	waitFor(t, "the warm stream to read its source", func() bool { return src.read.Load() > 0 })
	rd := f.NewReader()
	got := make([]byte, f.Size())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for off := 0; off < len(got); off += 128 << 10 {
		if _, err := rd.ReadAt(ctx, got[off:min(off+128<<10, len(got))], int64(off)); err != nil {
			t.Fatalf("read at %d of an adopted warm stream: %v", off, err)
		}
	}
	rd.Close()
	if !bytes.Equal(got, openssl(t, AES128CBC, testKey, testIV, src.data)) {
		t.Fatal("an adopted warm stream's ciphertext differs from openssl's")
	}

	g, gsrc := onePart(t, r, AES128CBC, 4<<20, testIV)
	g.Warm()
	waitFor(t, "a second warm stream to read its source", func() bool { return gsrc.read.Load() >= chunkSize })
	closed := make(chan struct{})
	go func() { g.StopWarm(); close(closed) }()
	waitFor(t, "stopping a warm stream with a chunk waiting for company", func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	})
}
