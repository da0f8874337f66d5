package cenc

import (
	"bytes"
	"context"
	stdcipher "crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/mpcfs/mpcfs/crypto"
)

// Parts lays out a planned segment's output as crypto parts: each
// protected moof is made (once per File, on first need) from the source's
// moof and the layout; each mdat is the source's bytes with the samples
// encrypted by a Transform; every other box is copied clear. src reads
// the source object (offsets from its start).
func Parts(l *Layout, src crypto.RangeSource, cfg *Config) ([]crypto.Part, error) {
	block, err := cfg.Scheme.Block(cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.Scheme.CBCLike() && len(cfg.ConstantIV) != 16 {
		return nil, fmt.Errorf("cbcs needs a 16-byte constant IV")
	}
	// The small boxes before a protected moof (styp, sidx, prft, ...)
	// are fetched with it, in one request: heads[i] is the first box of
	// moof i's head.
	heads := map[int]int{}
	for i, b := range l.Boxes {
		if b.Type != "moof" || b.NewSize == 0 {
			continue
		}
		h, size := i, int64(0)
		for h > 0 {
			prev := l.Boxes[h-1]
			if prev.Type == "mdat" || prev.Type == "moof" || size+prev.Size > maxHead {
				break
			}
			h, size = h-1, size+prev.Size
		}
		heads[h] = i
	}
	var parts []crypto.Part
	var frag *fragment // the moof whose mdat comes next
	clearRun := -1     // index of the last part if it is a clear copy
	for i := 0; i < len(l.Boxes); i++ {
		b := l.Boxes[i]
		if m, ok := heads[i]; ok {
			// One part for the head and the protected moof: the
			// boxes before it (clear from the fetched bytes, or
			// literal) and the moof rebuilt.
			f := &fragment{box: l.Boxes[m], headBoxes: l.Boxes[i:m], headOff: b.Off, src: src, cfg: cfg}
			if m+1 < len(l.Boxes) && l.Boxes[m+1].Type == "mdat" {
				f.mdatSize = l.Boxes[m+1].Size
			}
			var size int64
			for _, hb := range f.headBoxes {
				size += hb.OutSize()
			}
			size += f.box.NewSize
			parts = append(parts, crypto.Part{PlainSize: size, Src: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
				out, err := f.headOut(ctx, off == 0)
				if err != nil {
					return nil, err
				}
				return io.NopCloser(bytes.NewReader(out[off : off+n])), nil
			}})
			frag, clearRun, i = f, -1, m
			continue
		}
		switch {
		case b.Data != nil:
			parts = append(parts, crypto.Part{PlainSize: int64(len(b.Data)), Src: bytesSource(b.Data)})
			clearRun = -1
		case b.Type == "mdat" && frag != nil:
			f, mdatOff := frag, b.Off
			mdatSrc := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
				if rc := f.takePending(ctx, off, n); rc != nil {
					return rc, nil
				}
				return src(ctx, mdatOff+off, n)
			}
			parts = append(parts, crypto.Part{PlainSize: b.Size, Src: mdatSrc,
				Xform: &sampleCipher{frag: frag, mdatOff: b.Off, src: src, block: block, scheme: cfg.Scheme}})
			frag, clearRun = nil, -1
		default:
			if b.Type == "moof" {
				frag = nil // a moof with nothing protected is copied as it is
			}
			if clearRun >= 0 {
				parts[clearRun].PlainSize += b.Size // boxes follow each other in the source
				continue
			}
			parts = append(parts, crypto.Part{PlainSize: b.Size, Src: shifted(src, b.Off)})
			clearRun = len(parts) - 1
		}
	}
	return parts, nil
}

// maxHead bounds the clear boxes fetched with a moof.
const maxHead = 64 << 10

func bytesSource(data []byte) crypto.RangeSource {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data[off : off+n])), nil
	}
}

func shifted(src crypto.RangeSource, base int64) crypto.RangeSource {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) { return src(ctx, base+off, n) }
}

// fragment is one protected moof, built from the source moof when first
// needed and kept by the File: its bytes, and its protected samples for
// the mdat's sample cipher.
type fragment struct {
	box       BoxLayout
	headBoxes []BoxLayout // the boxes before the moof served with it
	headOff   int64       // where they start in the source (<= box.Off)
	src       crypto.RangeSource
	cfg       *Config

	// A stream reading the fragment from its start gets the head and
	// the whole mdat in one request: the rest of it waits in pending
	// for that stream's first mdat window (same ctx, the whole mdat).
	mdatSize   int64
	pending    io.ReadCloser
	pendingCtx context.Context

	mu      sync.Mutex
	head    []byte // source bytes [headOff, moof end)
	moof    []byte
	samples []protSample
	out     []byte // the head boxes' output and the moof's
}

// headOut is the output of the head boxes and the protected moof; stream:
// the reader starts at the head and goes on into the mdat.
func (f *fragment) headOut(ctx context.Context, stream bool) ([]byte, error) {
	moof, _, err := f.loadAs(ctx, stream)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.out == nil {
		var out []byte
		for _, hb := range f.headBoxes {
			if hb.Data != nil {
				out = append(out, hb.Data...)
			} else {
				out = append(out, f.head[hb.Off-f.headOff:hb.Off-f.headOff+hb.Size]...)
			}
		}
		f.out = append(out, moof...)
	}
	return f.out, nil
}

// headLocked fetches the source bytes from headOff to the moof's end
// (once); f.mu is held.
func (f *fragment) headLocked(ctx context.Context, stream bool) ([]byte, error) {
	if f.head != nil {
		return f.head, nil
	}
	n := f.box.Off + f.box.Size - f.headOff
	rest := int64(0)
	if stream {
		rest = f.mdatSize
	}
	rc, err := f.src(ctx, f.headOff, n+rest)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		rc.Close()
		return nil, fmt.Errorf("reading the source moof: %w", err)
	}
	f.head = b
	if rest == 0 {
		rc.Close()
		return b, nil
	}
	f.pending, f.pendingCtx = rc, ctx
	// Not taken by the time its stream ends: let the request go.
	context.AfterFunc(ctx, func() { f.dropPending(rc) })
	return b, nil
}

// takePending hands the mdat's waiting request to the stream that made
// it, when it asks for the whole mdat; any other ask drops it.
func (f *fragment) takePending(ctx context.Context, off, n int64) io.ReadCloser {
	f.mu.Lock()
	defer f.mu.Unlock()
	rc, owner := f.pending, f.pendingCtx
	if rc == nil {
		return nil
	}
	f.pending, f.pendingCtx = nil, nil
	if ctx == owner && off == 0 && n == f.mdatSize {
		return rc
	}
	rc.Close()
	return nil
}

func (f *fragment) dropPending(rc io.ReadCloser) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == rc {
		f.pending, f.pendingCtx = nil, nil
		rc.Close()
	}
}

func (f *fragment) load(ctx context.Context) (moof []byte, samples []protSample, err error) {
	return f.loadAs(ctx, false)
}

func (f *fragment) loadAs(ctx context.Context, stream bool) (moof []byte, samples []protSample, err error) {
	defer catch(&err)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.moof != nil {
		return f.moof, f.samples, nil
	}
	head, err := f.headLocked(ctx, stream)
	if err != nil {
		return nil, nil, err
	}
	b := head[f.box.Off-f.headOff:]
	in := &Init{Tracks: map[uint32]*Track{}}
	for _, t := range f.box.Trafs {
		in.Tracks[t.TrackID] = &Track{ID: t.TrackID, DefaultSize: t.DefaultSize}
	}
	moof, samples, err = protectMoof(b, f.box.Off, f.box.Trafs, in, f.cfg)
	if err != nil {
		return nil, nil, err
	}
	if int64(len(moof)) != f.box.NewSize {
		return nil, nil, fmt.Errorf("the protected moof at %d is %d bytes, planned %d: the source changed", f.box.Off, len(moof), f.box.NewSize)
	}
	f.moof, f.samples = moof, samples
	return moof, samples, nil
}

// span is a run of protected bytes of one sample, offsets relative to the
// mdat: a cenc subsample's protected bytes (keystream continuing across
// the sample's runs from ks), or a cbcs subsample (its own CBC chain from
// the constant IV; video 1:9 pattern, audio every block).
type span struct {
	start, end int64
	iv         [16]byte
	ks         int64 // cenc: keystream offset of start within the sample
	pattern    bool  // cbcs video: 1 block in 10
}

// sampleCipher is the Transform of one mdat.
type sampleCipher struct {
	frag    *fragment
	mdatOff int64
	src     crypto.RangeSource
	block   stdcipher.Block
	scheme  Scheme

	once  sync.Mutex
	spans []span

	// cbcs checkpoints: the chain after every cpEvery-th pattern block
	// of a span, recorded by whichever stream encrypts it, so a stream
	// starting inside a long span re-encrypts from the nearest one and
	// not from the span's start.
	cpMu sync.Mutex
	cps  map[cpKey]checkpoint
}

// cpKey names a 64 KiB window of a span.
type cpKey struct {
	span   int
	window int64
}

// checkpoint is the chain after pattern block block.
type checkpoint struct {
	block int64
	chain [16]byte
}

// cpEvery is the checkpoint spacing in blocks (64 KiB).
const cpEvery = 4096

// record keeps the chain after pattern block block of span when it is
// the first pattern block of its 64 KiB window.
func (x *sampleCipher) record(span int, block, period int64, chain [16]byte) {
	w := block / cpEvery
	if block == 0 || (block-period)/cpEvery == w {
		return
	}
	x.cpMu.Lock()
	if x.cps == nil {
		x.cps = map[cpKey]checkpoint{}
	}
	x.cps[cpKey{span, w}] = checkpoint{block, chain}
	x.cpMu.Unlock()
}

// nearestCheckpoint is the latest checkpointed pattern block of span
// before block k, or -1.
func (x *sampleCipher) nearestCheckpoint(span int, k int64) (int64, [16]byte) {
	x.cpMu.Lock()
	defer x.cpMu.Unlock()
	for w := (k - 1) / cpEvery; w > 0; w-- {
		if c, ok := x.cps[cpKey{span, w}]; ok && c.block < k {
			return c.block, c.chain
		}
	}
	return -1, [16]byte{}
}

// Cut ends a chunk of the mdat starting at pos with n bytes where no
// cbcs block is cut in two (at most 15 bytes shorter), so that streams
// never read a block's rest from the source; cenc cuts nowhere.
func (x *sampleCipher) Cut(ctx context.Context, pos, n int64) int64 {
	if !x.scheme.CBCLike() || n < 32 {
		return n
	}
	spans, err := x.spansOf(ctx)
	if err != nil {
		return n
	}
	end := pos + n
	i := sort.Search(len(spans), func(i int) bool { return spans[i].end > end })
	if i == len(spans) || spans[i].start >= end {
		return n
	}
	if into := (end - spans[i].start) % 16; end-into > pos {
		return n - into
	}
	return n
}

func (x *sampleCipher) spansOf(ctx context.Context) ([]span, error) {
	x.once.Lock()
	defer x.once.Unlock()
	if x.spans != nil {
		return x.spans, nil
	}
	_, samples, err := x.frag.load(ctx)
	if err != nil {
		return nil, err
	}
	spans := make([]span, 0, len(samples))
	for _, s := range samples {
		start := s.pos - x.mdatOff
		if s.subs == nil {
			spans = append(spans, span{start: start, end: start + s.size, iv: s.iv})
			continue
		}
		var ks int64
		pos := start
		for _, ss := range s.subs {
			pos += int64(ss.BytesOfClearData)
			if ss.BytesOfProtectedData > 0 {
				end := pos + int64(ss.BytesOfProtectedData)
				spans = append(spans, span{start: pos, end: end, iv: s.iv, ks: ks, pattern: s.video})
				ks += int64(ss.BytesOfProtectedData)
				pos = end
			}
		}
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	x.spans = spans
	return spans, nil
}

// Stream starts encrypting the mdat at pos.
func (x *sampleCipher) Stream(ctx context.Context, pos int64) (crypto.TransformStream, error) {
	spans, err := x.spansOf(ctx)
	if err != nil {
		return nil, err
	}
	i := sort.Search(len(spans), func(i int) bool { return spans[i].end > pos })
	return &sampleStream{x: x, spans: spans, idx: i, pos: pos, chainSpan: -1}, nil
}

// sampleStream encrypts the mdat's bytes in order.
type sampleStream struct {
	x     *sampleCipher
	spans []span
	idx   int   // first span that may still hold bytes at pos
	pos   int64 // mdat-relative offset of the next byte

	// cbcs: chain is the CBC chain value for the next encrypted block of
	// span chainSpan, after block chainBlock (-1: none yet, chain = IV).
	chainSpan  int
	chainBlock int64
	chain      [16]byte
	// carry is the ciphertext of the block at carryAt (mdat-relative),
	// made whole when a buffer ended inside it.
	carryAt int64
	carry   [16]byte
	carried bool
}

func (s *sampleStream) Apply(ctx context.Context, buf []byte) error {
	start, end := s.pos, s.pos+int64(len(buf))
	for ; s.idx < len(s.spans) && s.spans[s.idx].start < end; s.idx++ {
		sp := &s.spans[s.idx]
		a, b := max(sp.start, start), min(sp.end, end)
		if a < b {
			var err error
			if s.x.scheme.CBCLike() {
				err = s.cbcs(ctx, s.idx, buf, start, a, b)
			} else {
				s.ctr(sp, buf[a-start:b-start], a)
			}
			if err != nil {
				return err
			}
		}
		if sp.end > end {
			break // the span goes on in the next buffer
		}
	}
	s.pos = end
	return nil
}

// ctr XORs the keystream of span sp at mdat offset at into p.
func (s *sampleStream) ctr(sp *span, p []byte, at int64) {
	ks := sp.ks + (at - sp.start)
	var ctr [16]byte
	copy(ctr[:8], sp.iv[:8])
	binary.BigEndian.PutUint64(ctr[8:], uint64(ks/16))
	st := stdcipher.NewCTR(s.x.block, ctr[:])
	if skip := ks % 16; skip > 0 {
		var junk [16]byte
		st.XORKeyStream(junk[:skip], junk[:skip])
	}
	st.XORKeyStream(p, p)
}

// cbcs encrypts the pattern blocks of span i that lie in [a, b), buf
// holding mdat bytes from bufStart.
func (s *sampleStream) cbcs(ctx context.Context, i int, buf []byte, bufStart, a, b int64) error {
	sp := &s.spans[i]
	period := int64(1)
	if sp.pattern {
		period = 10
	}
	full := (sp.end - sp.start) / 16 // blocks; a partial last block stays clear
	first := (a - sp.start) / 16
	for k := first - first%period; k < full; k += period { // the pattern's encrypted blocks
		bs := sp.start + 16*k
		if bs >= b {
			break
		}
		if bs+16 <= a {
			continue // wholly before this buffer
		}
		be := bs + 16
		if s.carried && s.carryAt == bs {
			copy(buf[max(bs, bufStart)-bufStart:min(be, b)-bufStart], s.carry[max(bs, bufStart)-bs:min(be, b)-bs])
			continue
		}
		if err := s.chainTo(ctx, i, k); err != nil {
			return err
		}
		var blk [16]byte
		if bs >= bufStart && be <= bufStart+int64(len(buf)) {
			copy(blk[:], buf[bs-bufStart:be-bufStart])
		} else if err := s.readPlain(ctx, bs, blk[:]); err != nil {
			return err
		}
		s.encryptBlock(&blk)
		s.chainBlock = k
		s.x.record(i, k, period, s.chain)
		lo, hi := max(bs, bufStart), min(be, bufStart+int64(len(buf)))
		copy(buf[lo-bufStart:hi-bufStart], blk[lo-bs:hi-bs])
		if lo != bs || hi != be {
			s.carried, s.carryAt, s.carry = true, bs, blk
		}
	}
	return nil
}

// chainTo makes s.chain the chain value before pattern block k of span i:
// the constant IV for the span's first block, else the ciphertext of the
// pattern block before k, re-encrypted from the source when the stream
// started inside the span.
func (s *sampleStream) chainTo(ctx context.Context, i int, k int64) error {
	sp := &s.spans[i]
	period := int64(1)
	if sp.pattern {
		period = 10
	}
	if s.chainSpan == i && s.chainBlock == k-period {
		return nil
	}
	s.chainSpan, s.chainBlock, s.chain = i, -1, sp.iv
	if k == 0 {
		return nil
	}
	from := int64(0) // the first pattern block to re-encrypt
	if cp, chain := s.x.nearestCheckpoint(i, k); cp >= 0 {
		from, s.chain = cp+period, chain
	}
	if from >= k {
		s.chainBlock = k - period
		return nil
	}
	prefix := make([]byte, 16*(k-from))
	if err := s.readPlain(ctx, sp.start+16*from, prefix); err != nil {
		return err
	}
	for j := int64(0); j < k-from; j += period {
		blk := [16]byte(prefix[16*j : 16*j+16])
		s.encryptBlock(&blk)
	}
	s.chainBlock = k - period
	return nil
}

// encryptBlock CBC-encrypts one block in place with s.chain, which
// becomes the block's ciphertext (without a CBC mode object: one block
// at a time, it would be an allocation per block).
func (s *sampleStream) encryptBlock(blk *[16]byte) {
	for i := range blk {
		blk[i] ^= s.chain[i]
	}
	s.x.block.Encrypt(blk[:], blk[:])
	s.chain = *blk
}

// readPlain reads source bytes at mdat offset off into p.
func (s *sampleStream) readPlain(ctx context.Context, off int64, p []byte) error {
	rc, err := s.x.src(ctx, s.x.mdatOff+off, int64(len(p)))
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, p); err != nil {
		return fmt.Errorf("reading sample bytes at %d: %w", s.x.mdatOff+off, err)
	}
	return nil
}
