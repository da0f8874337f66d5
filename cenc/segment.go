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
}

// maxMoof bounds a moof read into memory (planning and serving).
const maxMoof = 64 << 20

// Scan plans a media segment: it walks its top-level boxes and, for every
// protected traf, finds each video sample's subsamples. nextIV is the
// task's IV counter: each protected sample takes one. The whole segment
// is in data (planning reads each segment once).
func Scan(data []byte, in *Init, cfg *Config, nextIV *uint64) (*Layout, error) {
	l := &Layout{}
	var lastMoof *BoxLayout
	var lastSamples [][]srcSample
	for off := int64(0); off < int64(len(data)); {
		typ, size, err := boxHeader(data[off:])
		if err != nil {
			return nil, fmt.Errorf("box at offset %d: %w", off, err)
		}
		b := BoxLayout{Type: typ, Off: off, Size: size}
		switch typ {
		case "moof":
			if size > maxMoof {
				return nil, fmt.Errorf("moof at %d is %d bytes (limit %d)", off, size, maxMoof)
			}
			moof, samples, err := parseMoof(data[off:off+size], off, in)
			if err != nil {
				return nil, fmt.Errorf("moof at %d: %w", off, err)
			}
			for i, traf := range moof.Trafs {
				t := in.Tracks[traf.Tfhd.TrackID]
				tl := TrafLayout{TrackID: t.ID, Protected: t.Protected, Video: t.Video, DefaultSize: t.DefaultSize}
				if t.Protected {
					tl.FirstIV = *nextIV
					*nextIV += uint64(len(samples[i]))
				}
				if t.Protected && t.Video {
					for _, s := range samples[i] {
						if s.pos+s.size > int64(len(data)) {
							return nil, fmt.Errorf("moof at %d: a sample of track %d ends past the segment", off, t.ID)
						}
						subs, err := t.protRanges(data[s.pos:s.pos+s.size], string(cfg.Scheme))
						if err != nil {
							return nil, fmt.Errorf("moof at %d, track %d: subsamples: %w", off, t.ID, err)
						}
						tl.Subs = appendSubs(tl.Subs, subs)
					}
				}
				b.Trafs = append(b.Trafs, tl)
			}
			newMoof, _, err := protectMoof(data[off:off+size], off, b.Trafs, in, cfg)
			if err != nil {
				return nil, fmt.Errorf("moof at %d: %w", off, err)
			}
			if int64(len(newMoof)) != size {
				b.NewSize = int64(len(newMoof)) // else nothing in it is protected
			}
			lastSamples = samples
		case "mdat":
			if lastMoof != nil {
				for _, ts := range lastSamples {
					for _, s := range ts {
						if s.pos < off || s.pos+s.size > off+size {
							return nil, fmt.Errorf("moof at %d: a sample lies outside the mdat that follows it", lastMoof.Off)
						}
					}
				}
			}
			lastSamples = nil
		}
		l.Boxes = append(l.Boxes, b)
		if typ == "moof" {
			lastMoof = &l.Boxes[len(l.Boxes)-1]
		}
		l.Size += max(b.NewSize, b.Size)
		off += size
	}
	if lastSamples != nil {
		return nil, errors.New("a moof is not followed by its mdat")
	}
	return l, nil
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
	var saios []*mp4.SaioBox
	var sencs []*mp4.SencBox
	for i, traf := range moof.Trafs {
		tl := trafs[i]
		if tl.TrackID != traf.Tfhd.TrackID {
			return nil, nil, fmt.Errorf("traf %d is of track %d, the plan says %d: the source changed", i, traf.Tfhd.TrackID, tl.TrackID)
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
			if cfg.Scheme == CBCS {
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
	}
	growth := int64(moof.Size()) - int64(len(b))
	if growth == 0 {
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
