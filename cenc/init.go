package cenc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/Eyevinn/mp4ff/mp4"
)

// Track is what segment planning needs to know of one track of an init
// segment.
type Track struct {
	ID        uint32
	Video     bool // NAL-structured video: subsamples (else whole samples)
	Protected bool // encrypted (video always; audio with encrypt_audio 1)
	// DefaultSize is the trex default sample size, for truns without
	// sizes (and no tfhd default).
	DefaultSize uint32
	Timescale   uint32 // mdhd: fragment start times, for the clear lead
	protRanges  mp4.ProtectionRangeFunc
}

// Init is a protected init segment and its tracks by ID.
type Init struct {
	Data   []byte
	Tracks map[uint32]*Track
	// Protected is false when no track was encrypted (a text or
	// audio-only rendition with encrypt_audio 0): the init is the source's.
	Protected bool
}

// ProtectInit rewrites a clear init segment (ftyp + moov with mvex): each
// video sample entry becomes encv and, with cfg.EncryptAudio, each audio
// one enca, with sinf (frma, schm, schi/tenc); the moov gets the PSSH of
// every DRM. Other tracks (text, data) stay clear.
//
// mp4ff parses the init, but the output is the source's bytes edited in
// place (a sample entry's type, a sinf appended to it, PSSH boxes
// appended to the moov, the sizes of the boxes around them): every other
// box is kept byte for byte, whatever mp4ff would re-encode differently.
func ProtectInit(src []byte, cfg *Config, psshs []Pssh) (in *Init, err error) {
	defer catch(&err)
	f, err := mp4.DecodeFile(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("init segment: %w", err)
	}
	if f.Init == nil || f.Moov == nil {
		return nil, fmt.Errorf("init segment: no moov box")
	}
	if len(f.Segments) > 0 {
		return nil, fmt.Errorf("init segment: it holds media fragments too (single-file media is not supported)")
	}
	moov := f.Init.Moov
	if moov.Mvex == nil {
		return nil, fmt.Errorf("init segment: no mvex box (not fragmented MP4)")
	}
	moovBox, traks, err := locateTraks(src)
	if err != nil {
		return nil, fmt.Errorf("init segment: %w", err)
	}
	if len(traks) != len(moov.Traks) {
		return nil, fmt.Errorf("init segment: %d traks found, mp4ff parsed %d", len(traks), len(moov.Traks))
	}
	out := &Init{Tracks: map[uint32]*Track{}}
	var edits []edit
	for i, trak := range moov.Traks {
		t, format, sinf, err := protectTrak(trak, cfg)
		if err != nil {
			return nil, fmt.Errorf("init segment, track %d: %w", trak.Tkhd.TrackID, err)
		}
		if trex, ok := moov.Mvex.GetTrex(t.ID); ok {
			t.DefaultSize = trex.DefaultSampleSize
		}
		out.Tracks[t.ID] = t
		if !t.Protected {
			continue
		}
		out.Protected = true
		loc := traks[i]
		entry := loc.path[len(loc.path)-1]
		if cfg.ClearLead > 0 {
			// The clear entry goes after the protected one (inserted
			// first: edits at one offset end up in reverse order).
			stsd := loc.path[len(loc.path)-2]
			count := binary.BigEndian.Uint32(src[stsd.off+stsd.hdr+4:])
			edits = append(edits, edit{at: stsd.off + stsd.hdr + 4, cut: 4, data: binary.BigEndian.AppendUint32(nil, count+1)})
			edits = append(edits, edit{at: entry.off + entry.size, data: src[entry.off : entry.off+entry.size]})
			for _, b := range loc.path[:len(loc.path)-1] {
				edits = append(edits, grow(b, int(entry.size)))
			}
		}
		edits = append(edits, edit{at: entry.off + 4, cut: 4, data: []byte(format)})
		edits = append(edits, edit{at: entry.off + entry.size, data: sinf})
		for _, b := range loc.path {
			edits = append(edits, grow(b, len(sinf)))
		}
	}
	if !out.Protected {
		out.Data = src
		return out, nil
	}
	var pssh []byte
	for _, p := range psshs {
		pssh = append(pssh, p.Box...)
	}
	edits = append(edits, edit{at: moovBox.off + moovBox.size, data: pssh})
	for _, e := range edits { // moov grows by every insertion
		if e.cut == 0 && e.size == nil {
			edits = append(edits, grow(moovBox, len(e.data)))
		}
	}
	out.Data = applyEdits(src, edits)
	if _, err := mp4.DecodeFile(bytes.NewReader(out.Data)); err != nil {
		return nil, fmt.Errorf("init segment: the protected init does not parse: %w", err)
	}
	return out, nil
}

// protectTrak decides how a track is protected and makes its sinf.
func protectTrak(trak *mp4.TrakBox, cfg *Config) (t *Track, format string, sinfBytes []byte, err error) {
	t = &Track{ID: trak.Tkhd.TrackID}
	if trak.Mdia.Mdhd != nil {
		t.Timescale = trak.Mdia.Mdhd.Timescale
	}
	stsd := trak.Mdia.Minf.Stbl.Stsd
	if len(stsd.Children) != 1 {
		return nil, "", nil, fmt.Errorf("%d sample descriptions (want 1)", len(stsd.Children))
	}
	sinf := &mp4.SinfBox{}
	var tenc *mp4.TencBox
	switch se := stsd.Children[0].(type) {
	case *mp4.VisualSampleEntryBox:
		orig := se.Type()
		switch orig {
		case "avc1", "avc3":
			if se.AvcC == nil {
				return nil, "", nil, fmt.Errorf("%s without avcC", orig)
			}
			t.protRanges, err = avcRanges(se.AvcC)
		case "hvc1", "hev1":
			if se.HvcC == nil {
				return nil, "", nil, fmt.Errorf("%s without hvcC", orig)
			}
			t.protRanges, err = hevcRanges(se.HvcC)
		case "encv":
			return nil, "", nil, fmt.Errorf("the source is already encrypted (encv)")
		default:
			return nil, "", nil, fmt.Errorf("video sample entry %q cannot be encrypted (AVC and HEVC can)", orig)
		}
		if err != nil {
			return nil, "", nil, err
		}
		t.Video, t.Protected, format = true, true, "encv"
		sinf.AddChild(&mp4.FrmaBox{DataFormat: orig})
		tenc = videoTenc(cfg)
	case *mp4.AudioSampleEntryBox:
		orig := se.Type()
		if orig == "enca" {
			return nil, "", nil, fmt.Errorf("the source is already encrypted (enca)")
		}
		if !cfg.EncryptAudio {
			return t, "", nil, nil
		}
		t.Protected, format = true, "enca"
		sinf.AddChild(&mp4.FrmaBox{DataFormat: orig})
		tenc = audioTenc(cfg)
	default:
		return t, "", nil, nil // text and data tracks stay clear
	}
	sinf.AddChild(&mp4.SchmBox{SchemeType: string(cfg.Scheme), SchemeVersion: 0x10000})
	schi := &mp4.SchiBox{}
	schi.AddChild(tenc)
	sinf.AddChild(schi)
	var buf bytes.Buffer
	if err := sinf.Encode(&buf); err != nil {
		return nil, "", nil, err
	}
	return t, format, buf.Bytes(), nil
}

// boxLoc is a box in a byte slice: its offset, size and header length.
type boxLoc struct {
	typ            string
	off, size, hdr int64
}

// children lists the boxes in b[from:to).
func children(b []byte, from, to int64) ([]boxLoc, error) {
	var out []boxLoc
	for off := from; off < to; {
		if to-off < 8 {
			return nil, fmt.Errorf("truncated box at %d", off)
		}
		size, hdr := int64(binary.BigEndian.Uint32(b[off:])), int64(8)
		typ := string(b[off+4 : off+8])
		if size == 1 {
			if to-off < 16 {
				return nil, fmt.Errorf("truncated box at %d", off)
			}
			size, hdr = int64(binary.BigEndian.Uint64(b[off+8:])), 16
		} else if size == 0 {
			size = to - off
		}
		if size < hdr || off+size > to {
			return nil, fmt.Errorf("box %q at %d: size %d does not fit", typ, off, size)
		}
		out = append(out, boxLoc{typ: typ, off: off, size: size, hdr: hdr})
		off += size
	}
	return out, nil
}

func child(b []byte, parent boxLoc, typ string, skip int64) (boxLoc, error) {
	kids, err := children(b, parent.off+parent.hdr+skip, parent.off+parent.size)
	if err != nil {
		return boxLoc{}, err
	}
	for _, k := range kids {
		if k.typ == typ {
			return k, nil
		}
	}
	return boxLoc{}, fmt.Errorf("no %s in %s", typ, parent.typ)
}

// trakLoc is the chain of boxes from a trak down to its sample entry:
// trak, mdia, minf, stbl, stsd, entry (all grow when the entry does).
type trakLoc struct{ path []boxLoc }

// locateTraks finds the moov and, for each trak, its sample entry chain.
func locateTraks(b []byte) (boxLoc, []trakLoc, error) {
	top, err := children(b, 0, int64(len(b)))
	if err != nil {
		return boxLoc{}, nil, err
	}
	var moov boxLoc
	for _, x := range top {
		if x.typ == "moov" {
			moov = x
		}
	}
	if moov.typ == "" {
		return boxLoc{}, nil, fmt.Errorf("no moov")
	}
	kids, err := children(b, moov.off+moov.hdr, moov.off+moov.size)
	if err != nil {
		return boxLoc{}, nil, err
	}
	var traks []trakLoc
	for _, trak := range kids {
		if trak.typ != "trak" {
			continue
		}
		loc := trakLoc{path: []boxLoc{trak}}
		cur := trak
		for _, name := range []string{"mdia", "minf", "stbl", "stsd"} {
			if cur, err = child(b, cur, name, 0); err != nil {
				return boxLoc{}, nil, err
			}
			loc.path = append(loc.path, cur)
		}
		entries, err := children(b, cur.off+cur.hdr+8, cur.off+cur.size) // stsd: version, flags, entry count
		if err != nil || len(entries) != 1 {
			return boxLoc{}, nil, fmt.Errorf("stsd: want one sample entry")
		}
		loc.path = append(loc.path, entries[0])
		traks = append(traks, loc)
	}
	return moov, traks, nil
}

// edit replaces cut bytes at at with data, or (size set) adds to the size
// field of a box.
type edit struct {
	at, cut int64
	data    []byte
	size    *boxLoc
	delta   int64
}

func grow(b boxLoc, n int) edit { return edit{at: b.off, size: &b, delta: int64(n)} }

// applyEdits applies the edits to a copy of src: sizes are added first
// (at their original offsets), then byte edits from the end backwards.
func applyEdits(src []byte, edits []edit) []byte {
	b := append([]byte(nil), src...)
	for _, e := range edits {
		if e.size == nil {
			continue
		}
		if e.size.hdr == 16 {
			binary.BigEndian.PutUint64(b[e.at+8:], binary.BigEndian.Uint64(b[e.at+8:])+uint64(e.delta))
		} else {
			binary.BigEndian.PutUint32(b[e.at:], binary.BigEndian.Uint32(b[e.at:])+uint32(e.delta))
		}
	}
	var data []edit
	for _, e := range edits {
		if e.size == nil {
			data = append(data, e)
		}
	}
	sort.SliceStable(data, func(i, j int) bool { return data[i].at > data[j].at })
	for _, e := range data {
		b = append(b[:e.at], append(append([]byte(nil), e.data...), b[e.at+e.cut:]...)...)
	}
	return b
}

func videoTenc(cfg *Config) *mp4.TencBox {
	if cfg.Scheme.CBCLike() {
		return &mp4.TencBox{Version: 1, DefaultCryptByteBlock: 1, DefaultSkipByteBlock: 9, DefaultIsProtected: 1,
			DefaultKID: mp4.UUID(cfg.KID[:]), DefaultConstantIV: cfg.ConstantIV}
	}
	return &mp4.TencBox{DefaultIsProtected: 1, DefaultPerSampleIVSize: ivSize, DefaultKID: mp4.UUID(cfg.KID[:])}
}

func audioTenc(cfg *Config) *mp4.TencBox {
	if cfg.Scheme.CBCLike() {
		return &mp4.TencBox{Version: 1, DefaultIsProtected: 1, DefaultKID: mp4.UUID(cfg.KID[:]), DefaultConstantIV: cfg.ConstantIV}
	}
	return &mp4.TencBox{DefaultIsProtected: 1, DefaultPerSampleIVSize: ivSize, DefaultKID: mp4.UUID(cfg.KID[:])}
}

// ivSize is the cenc per-sample IV size: 8 bytes, the counter block's
// high half; the low half counts blocks within the sample.
const ivSize = 8

func avcRanges(avcC *mp4.AvcCBox) (mp4.ProtectionRangeFunc, error) {
	spsMap, ppsMap, err := avcParameterSets(avcC)
	if err != nil {
		return nil, err
	}
	return func(sample []byte, scheme string) ([]mp4.SubSamplePattern, error) {
		return mp4.GetAVCProtectRanges(spsMap, ppsMap, sample, scheme)
	}, nil
}

func hevcRanges(hvcC *mp4.HvcCBox) (mp4.ProtectionRangeFunc, error) {
	spsMap, ppsMap, err := hevcParameterSets(hvcC)
	if err != nil {
		return nil, err
	}
	return func(sample []byte, scheme string) ([]mp4.SubSamplePattern, error) {
		return mp4.GetHEVCProtectRanges(spsMap, ppsMap, sample, scheme)
	}, nil
}

// avcParameterSets parses the SPS and PPS of an avcC, which cbcs needs to
// find each slice header's end. (mp4ff reads 4-byte NAL lengths, as
// ffmpeg and every packager write them.)
func avcParameterSets(avcC *mp4.AvcCBox) (map[uint32]*avc.SPS, map[uint32]*avc.PPS, error) {
	spsMap := map[uint32]*avc.SPS{}
	for _, nalu := range avcC.SPSnalus {
		sps, err := avc.ParseSPSNALUnit(nalu, false)
		if err != nil {
			return nil, nil, fmt.Errorf("avcC SPS: %w", err)
		}
		spsMap[sps.ParameterID] = sps
	}
	ppsMap := map[uint32]*avc.PPS{}
	for _, nalu := range avcC.PPSnalus {
		pps, err := avc.ParsePPSNALUnit(nalu, spsMap)
		if err != nil {
			return nil, nil, fmt.Errorf("avcC PPS: %w", err)
		}
		ppsMap[pps.PicParameterSetID] = pps
	}
	return spsMap, ppsMap, nil
}

func hevcParameterSets(hvcC *mp4.HvcCBox) (map[uint32]*hevc.SPS, map[uint32]*hevc.PPS, error) {
	if hvcC.LengthSizeMinusOne != 3 {
		return nil, nil, fmt.Errorf("hvcC NAL length size %d (only 4 is supported)", hvcC.LengthSizeMinusOne+1)
	}
	spsMap := map[uint32]*hevc.SPS{}
	ppsMap := map[uint32]*hevc.PPS{}
	for pass := 0; pass < 2; pass++ { // every SPS before any PPS
		for _, arr := range hvcC.NaluArrays {
			for _, nalu := range arr.Nalus {
				switch {
				case pass == 0 && arr.NaluType() == hevc.NALU_SPS:
					sps, err := hevc.ParseSPSNALUnit(nalu)
					if err != nil {
						return nil, nil, fmt.Errorf("hvcC SPS: %w", err)
					}
					spsMap[uint32(sps.SpsID)] = sps
				case pass == 1 && arr.NaluType() == hevc.NALU_PPS:
					pps, err := hevc.ParsePPSNALUnit(nalu, spsMap)
					if err != nil {
						return nil, nil, fmt.Errorf("hvcC PPS: %w", err)
					}
					ppsMap[pps.PicParameterSetID] = pps
				}
			}
		}
	}
	return spsMap, ppsMap, nil
}
