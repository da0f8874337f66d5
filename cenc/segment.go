package cenc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/Eyevinn/mp4ff/mp4"
)

// Layout is the plan of one media segment's protected form, kept with the
// task: the source's top-level boxes in order, and for each moof what its
// protected version needs that the source's moof does not say (each
// video sample's clear/protected split, the first sample's IV). Sample
// bytes are not in it.
type Layout struct {
	Boxes []BoxLayout `json:"boxes"`
	Size  int64       `json:"size"` // of the output, exact
}

// BoxLayout is one top-level box of the source segment.
type BoxLayout struct {
	Type    string       `json:"type"`
	Off     int64        `json:"off"`
	Size    int64        `json:"size"`
	NewSize int64        `json:"new_size,omitempty"` // moof: with senc, saiz, saio
	Trafs   []TrafLayout `json:"trafs,omitempty"`    // moof
	// Data replaces the box in the output: a single file's protected
	// init, or a sidx with the new sizes.
	Data []byte `json:"data,omitempty"`
}

// TrafLayout is what encrypting one traf's samples needs.
type TrafLayout struct {
	TrackID   uint32 `json:"track"`
	Protected bool   `json:"protected,omitempty"`
	Video     bool   `json:"video,omitempty"`
	// FirstIV is the cenc IV of the traf's first sample; sample i uses
	// FirstIV+i. Planning hands out IVs from one counter per task, so no
	// two samples share one.
	FirstIV uint64 `json:"first_iv,omitempty"`
	// Subs holds each video sample's subsamples: a uvarint count, then
	// uvarint pairs (clear bytes, protected bytes).
	Subs []byte `json:"subs,omitempty"`
	// DefaultSize is the trex default sample size (truns without sizes).
	DefaultSize uint32 `json:"default_size,omitempty"`
	// ClearLead: a protected track's fragment in the clear lead: its
	// samples stay clear and its tfhd names the clear sample entry.
	ClearLead bool `json:"clear_lead,omitempty"`
}

// maxMoof bounds a moof read into memory (planning and serving).
const maxMoof = 64 << 20

// Scan plans a media segment held whole in data (see Scanner).
func Scan(data []byte, in *Init, cfg *Config, nextIV *uint64) (*Layout, error) {
	sc := NewScanner(in, cfg, nextIV)
	for off := int64(0); off < int64(len(data)); {
		_, size, err := boxHeader(data[off:])
		if err != nil {
			return nil, fmt.Errorf("box at offset %d: %w", off, err)
		}
		if err := sc.Add(data[off : off+size]); err != nil {
			return nil, err
		}
		off += size
	}
	return sc.Layout()
}

// Scanner plans a media segment, or a whole single-file representation,
// one top-level box at a time (so a large file is never in memory whole):
// for every protected traf of a moof it finds, once the mdat after it
// comes, each video sample's subsamples. nextIV is the task's IV counter:
// each protected sample takes one. sidx boxes are rewritten for the new
// sizes when the layout is finished.
type Scanner struct {
	in     *Init
	cfg    *Config
	nextIV *uint64
	l      Layout
	off    int64 // source offset of the next box
	// the moof waiting for its mdat: its box index, bytes and samples
	moofIdx  int
	moof     []byte
	moofSmps [][]srcSample
	sidx     []int // indices of sidx boxes
}

// NewScanner starts planning a segment or file.
func NewScanner(in *Init, cfg *Config, nextIV *uint64) *Scanner {
	return &Scanner{in: in, cfg: cfg, nextIV: nextIV, moofIdx: -1}
}

// Replace puts data in place of the next size source bytes (a single
// file's init: its protected version).
func (s *Scanner) Replace(size int64, data []byte) {
	s.l.Boxes = append(s.l.Boxes, BoxLayout{Type: "init", Off: s.off, Size: size, Data: data})
	s.off += size
}

// Add plans the next top-level box, given whole.
func (s *Scanner) Add(box []byte) (err error) {
	defer catch(&err)
	off := s.off
	typ, size, err := boxHeader(box)
	if err != nil || size != int64(len(box)) {
		return fmt.Errorf("box at offset %d: bad header (%v)", off, err)
	}
	b := BoxLayout{Type: typ, Off: off, Size: size}
	switch typ {
	case "moof":
		if s.moofIdx >= 0 {
			return fmt.Errorf("moof at %d follows a moof without an mdat", off)
		}
		if size > maxMoof {
			return fmt.Errorf("moof at %d is %d bytes (limit %d)", off, size, maxMoof)
		}
		_, samples, err := parseMoof(box, off, s.in)
		if err != nil {
			return fmt.Errorf("moof at %d: %w", off, err)
		}
		s.moofIdx, s.moof, s.moofSmps = len(s.l.Boxes), append([]byte(nil), box...), samples
	case "mdat":
		if s.moofIdx >= 0 {
			if err := s.planMoof(box, off); err != nil {
				return err
			}
		}
	case "sidx":
		s.sidx = append(s.sidx, len(s.l.Boxes))
		b.Data = append([]byte(nil), box...) // rewritten in Layout
	}
	s.l.Boxes = append(s.l.Boxes, b)
	s.off += size
	return nil
}

// planMoof plans the waiting moof now that its mdat (at mdatOff) is here.
func (s *Scanner) planMoof(mdat []byte, mdatOff int64) error {
	mb := &s.l.Boxes[s.moofIdx]
	moof, _, err := parseMoof(s.moof, mb.Off, s.in)
	if err != nil {
		return err
	}
	for i, traf := range moof.Trafs {
		t := s.in.Tracks[traf.Tfhd.TrackID]
		tl := TrafLayout{TrackID: t.ID, Protected: t.Protected, Video: t.Video, DefaultSize: t.DefaultSize}
		for _, smp := range s.moofSmps[i] {
			if smp.pos < mdatOff || smp.pos+smp.size > mdatOff+int64(len(mdat)) {
				return fmt.Errorf("moof at %d: a sample lies outside the mdat that follows it", mb.Off)
			}
		}
		if t.Protected && s.cfg.ClearLead > 0 && t.Timescale > 0 && traf.Tfdt != nil &&
			float64(traf.Tfdt.BaseMediaDecodeTime())/float64(t.Timescale) < s.cfg.ClearLead {
			tl.Protected, tl.ClearLead = false, true
		}
		if tl.Protected {
			tl.FirstIV = *s.nextIV
			*s.nextIV += uint64(len(s.moofSmps[i]))
		}
		if tl.Protected && t.Video {
			for _, smp := range s.moofSmps[i] {
				rel := smp.pos - mdatOff
				subs, err := t.protRanges(mdat[rel:rel+smp.size], s.cfg.Scheme.rangeScheme())
				if err != nil {
					return fmt.Errorf("moof at %d, track %d: subsamples: %w", mb.Off, t.ID, err)
				}
				tl.Subs = appendSubs(tl.Subs, subs)
			}
		}
		mb.Trafs = append(mb.Trafs, tl)
	}
	newMoof, _, err := protectMoof(s.moof, mb.Off, mb.Trafs, s.in, s.cfg)
	if err != nil {
		return fmt.Errorf("moof at %d: %w", mb.Off, err)
	}
	if !bytes.Equal(newMoof, s.moof) {
		mb.NewSize = int64(len(newMoof)) // else nothing in it changes
	}
	s.moofIdx, s.moof, s.moofSmps = -1, nil, nil
	return nil
}

// Layout finishes the plan: sidx references get the new sizes of the
// ranges they index.
func (s *Scanner) Layout() (l *Layout, err error) {
	defer catch(&err)
	if s.moofIdx >= 0 {
		return nil, errors.New("a moof is not followed by its mdat")
	}
	l = &s.l
	for _, i := range s.sidx {
		if err := l.rewriteSidx(i); err != nil {
			return nil, err
		}
	}
	l.Size = 0
	for _, b := range l.Boxes {
		l.Size += b.OutSize()
	}
	return l, nil
}

// OutSize is the box's size in the output.
func (b *BoxLayout) OutSize() int64 {
	switch {
	case b.Data != nil:
		return int64(len(b.Data))
	case b.NewSize > 0:
		return b.NewSize
	}
	return b.Size
}

// OutOffset maps a source offset at a box boundary to the output.
func (l *Layout) OutOffset(src int64) (int64, bool) {
	var out int64
	for _, b := range l.Boxes {
		if b.Off == src {
			return out, true
		}
		if b.Off > src {
			return 0, false
		}
		out += b.OutSize()
	}
	if n := len(l.Boxes); n > 0 && l.Boxes[n-1].Off+l.Boxes[n-1].Size == src {
		return out, true
	}
	return 0, src == 0
}

// rewriteSidx sets each reference's size to the output size of the source
// range it covers (which must start and end at box boundaries), and the
// first offset likewise.
func (l *Layout) rewriteSidx(i int) error {
	b := &l.Boxes[i]
	box, err := mp4.DecodeBox(0, bytes.NewReader(b.Data))
	if err != nil {
		return fmt.Errorf("sidx at %d: %w", b.Off, err)
	}
	sidx, ok := box.(*mp4.SidxBox)
	if !ok {
		return fmt.Errorf("sidx at %d: not a sidx", b.Off)
	}
	outSize := func(from, to int64) (int64, error) {
		a, ok1 := l.OutOffset(from)
		z, ok2 := l.OutOffset(to)
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("sidx at %d: a reference [%d, %d) does not start and end at boxes", b.Off, from, to)
		}
		return z - a, nil
	}
	end := b.Off + b.Size
	first, err := outSize(end, end+int64(sidx.FirstOffset))
	if err != nil {
		return err
	}
	pos := end + int64(sidx.FirstOffset)
	for j := range sidx.SidxRefs {
		r := &sidx.SidxRefs[j]
		n, err := outSize(pos, pos+int64(r.ReferencedSize))
		if err != nil {
			return err
		}
		pos += int64(r.ReferencedSize)
		if n >= 1<<31 {
			return fmt.Errorf("sidx at %d: a reference grows past 2 GiB", b.Off)
		}
		r.ReferencedSize = uint32(n)
	}
	sidx.FirstOffset = uint64(first)
	var buf bytes.Buffer
	if err := sidx.Encode(&buf); err != nil {
		return err
	}
	if int64(buf.Len()) != b.Size {
		return fmt.Errorf("sidx at %d: re-encoded to %d bytes, was %d", b.Off, buf.Len(), b.Size)
	}
	b.Data = buf.Bytes()
	return nil
}

// boxHeader reads a top-level box's type and size (32-bit or 64-bit).
func boxHeader(b []byte) (string, int64, error) {
	if len(b) < 8 {
		return "", 0, errors.New("truncated box header")
	}
	size := int64(binary.BigEndian.Uint32(b))
	typ := string(b[4:8])
	hdr := int64(8)
	switch size {
	case 1:
		if len(b) < 16 {
			return "", 0, errors.New("truncated box header")
		}
		size, hdr = int64(binary.BigEndian.Uint64(b[8:])), 16
	case 0:
		size = int64(len(b)) // to the end of the file
	}
	if size < hdr || size > int64(len(b)) {
		return "", 0, fmt.Errorf("%q box of %d bytes does not fit in the %d left", typ, size, len(b))
	}
	return typ, size, nil
}

// srcSample is a sample's place in the source.
type srcSample struct{ pos, size int64 }

// parseMoof decodes a moof and finds where each traf's samples lie in the
// source (absolute offsets). Only moof-relative data offsets are taken
// (default-base-is-moof, or no base offset with a single traf), which is
// what every CMAF/DASH/HLS packager writes.
func parseMoof(b []byte, moofOff int64, in *Init) (*mp4.MoofBox, [][]srcSample, error) {
	box, err := mp4.DecodeBox(0, bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	moof, ok := box.(*mp4.MoofBox)
	if !ok {
		return nil, nil, fmt.Errorf("not a moof")
	}
	all := make([][]srcSample, len(moof.Trafs))
	for i, traf := range moof.Trafs {
		if traf.Tfhd == nil {
			return nil, nil, fmt.Errorf("traf without tfhd")
		}
		tfhd := traf.Tfhd
		t := in.Tracks[tfhd.TrackID]
		if t == nil {
			return nil, nil, fmt.Errorf("traf of track %d, which the init segment does not have", tfhd.TrackID)
		}
		if tfhd.HasBaseDataOffset() || (!tfhd.DefaultBaseIfMoof() && len(moof.Trafs) > 1) {
			return nil, nil, fmt.Errorf("track %d: tfhd data offsets not relative to the moof are not supported", t.ID)
		}
		if ok, _ := traf.ContainsSencBox(); ok {
			return nil, nil, fmt.Errorf("track %d: the fragment is already encrypted (senc)", t.ID)
		}
		pos := moofOff
		for _, trun := range traf.Truns {
			if trun.HasDataOffset() {
				pos = moofOff + int64(trun.DataOffset)
			}
			trex := &mp4.TrexBox{DefaultSampleSize: t.DefaultSize}
			trun.AddSampleDefaultValues(tfhd, trex)
			for _, s := range trun.Samples {
				all[i] = append(all[i], srcSample{pos: pos, size: int64(s.Size)})
				pos += int64(s.Size)
			}
		}
	}
	return moof, all, nil
}

// protectMoof is a moof with, in every protected traf, senc (cenc: the
// samples' IVs; video: their subsamples), saiz and saio, and every trun's
// data offset moved by the moof's growth. Planning and serving both call
// it, so the size planned is the size served. It also returns each
// protected traf's samples (absolute source offsets) with their IVs and
// subsamples, for the sample cipher.
func protectMoof(b []byte, moofOff int64, trafs []TrafLayout, in *Init, cfg *Config) ([]byte, []protSample, error) {
	moof, samples, err := parseMoof(b, moofOff, in)
	if err != nil {
		return nil, nil, err
	}
	if len(trafs) != len(moof.Trafs) {
		return nil, nil, fmt.Errorf("the moof has %d trafs, the plan %d: the source changed", len(moof.Trafs), len(trafs))
	}
	var prot []protSample
	changed := false
	var saios []*mp4.SaioBox
	var sencs []*mp4.SencBox
	for i, traf := range moof.Trafs {
		tl := trafs[i]
		if tl.TrackID != traf.Tfhd.TrackID {
			return nil, nil, fmt.Errorf("traf %d is of track %d, the plan says %d: the source changed", i, traf.Tfhd.TrackID, tl.TrackID)
		}
		if tl.ClearLead {
			traf.Tfhd.Flags |= mp4.TfhdSampleDescriptionIndexPresentFlag
			traf.Tfhd.SampleDescriptionIndex = 2
			changed = true
			continue
		}
		if !tl.Protected {
			continue
		}
		n := len(samples[i])
		senc := mp4.NewSencBox(n, n)
		saiz := mp4.NewSaizBox(n)
		subs := tl.Subs
		for j, s := range samples[i] {
			ps := protSample{pos: s.pos, size: s.size, video: tl.Video}
			if tl.Video {
				var err error
				ps.subs, subs, err = readSubs(subs)
				if err != nil {
					return nil, nil, fmt.Errorf("track %d sample %d: %w", tl.TrackID, j, err)
				}
				var total int64
				for _, ss := range ps.subs {
					total += int64(ss.BytesOfClearData) + int64(ss.BytesOfProtectedData)
				}
				if total != s.size {
					return nil, nil, fmt.Errorf("track %d sample %d: subsamples cover %d bytes of %d: the source changed", tl.TrackID, j, total, s.size)
				}
			}
			var ivField []byte
			if cfg.Scheme.CBCLike() {
				copy(ps.iv[:], cfg.ConstantIV)
			} else {
				binary.BigEndian.PutUint64(ps.iv[:8], tl.FirstIV+uint64(j))
				ivField = ps.iv[:ivSize]
			}
			if err := senc.AddSample(mp4.SencSample{IV: ivField, SubSamples: ps.subs}); err != nil {
				return nil, nil, err
			}
			if info := len(ivField) + 2 + 6*len(ps.subs); len(ps.subs) > 0 && info > 255 {
				return nil, nil, fmt.Errorf("track %d sample %d: %d subsamples do not fit a saiz entry", tl.TrackID, j, len(ps.subs))
			}
			saiz.AddSampleInfo(ivField, ps.subs)
			prot = append(prot, ps)
		}
		if len(subs) != 0 {
			return nil, nil, fmt.Errorf("track %d: the plan has subsamples for more samples than the moof: the source changed", tl.TrackID)
		}
		if saiz.SampleCount == 0 {
			// cbcs audio: no per-sample information at all, each
			// sample's entry is 0 bytes.
			saiz.SampleCount, saiz.SampleInfo = uint32(n), make([]byte, n)
		}
		saio := mp4.NewSaioBox()
		traf.AddChild(saiz)
		traf.AddChild(saio)
		traf.AddChild(senc)
		saios, sencs = append(saios, saio), append(sencs, senc)
		changed = true
	}
	growth := int64(moof.Size()) - int64(len(b))
	if !changed {
		return b, prot, nil
	}
	for _, traf := range moof.Trafs {
		for _, trun := range traf.Truns {
			if trun.HasDataOffset() {
				trun.DataOffset += int32(growth)
			}
		}
	}
	// saio offsets: from the moof's start to each senc's first sample.
	pos := uint64(8)
	k := 0
	for _, c := range moof.Children {
		traf, ok := c.(*mp4.TrafBox)
		if !ok {
			pos += c.Size()
			continue
		}
		inner := pos + 8
		for _, tc := range traf.Children {
			if k < len(sencs) && tc == mp4.Box(sencs[k]) {
				saios[k].SetOffset(int64(inner + 16)) // full box header + sample count
				k++
			}
			inner += tc.Size()
		}
		pos += traf.Size()
	}
	var out bytes.Buffer
	out.Grow(int(moof.Size()))
	if err := moof.Encode(&out); err != nil {
		return nil, nil, err
	}
	if int64(out.Len()) != int64(len(b))+growth {
		return nil, nil, fmt.Errorf("the protected moof is %d bytes, expected %d", out.Len(), int64(len(b))+growth)
	}
	return out.Bytes(), prot, nil
}

// protSample is a protected sample: its place in the source, IV and
// subsamples (none: the whole sample is protected).
type protSample struct {
	pos, size int64
	iv        [16]byte
	subs      []mp4.SubSamplePattern
	video     bool
}

func appendSubs(b []byte, subs []mp4.SubSamplePattern) []byte {
	b = binary.AppendUvarint(b, uint64(len(subs)))
	for _, s := range subs {
		b = binary.AppendUvarint(b, uint64(s.BytesOfClearData))
		b = binary.AppendUvarint(b, uint64(s.BytesOfProtectedData))
	}
	return b
}

func readSubs(b []byte) ([]mp4.SubSamplePattern, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<16 {
		return nil, nil, errors.New("bad subsample layout")
	}
	b = b[k:]
	subs := make([]mp4.SubSamplePattern, n)
	for i := range subs {
		c, k1 := binary.Uvarint(b)
		if k1 <= 0 || c > 0xffff {
			return nil, nil, errors.New("bad subsample layout")
		}
		p, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 || p > 0xffffffff {
			return nil, nil, errors.New("bad subsample layout")
		}
		subs[i] = mp4.SubSamplePattern{BytesOfClearData: uint16(c), BytesOfProtectedData: uint32(p)}
		b = b[k1+k2:]
	}
	return subs, b, nil
}
