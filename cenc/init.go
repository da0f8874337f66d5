package cenc

import (
	"bytes"
	"fmt"

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
func ProtectInit(src []byte, cfg *Config, psshs []Pssh) (*Init, error) {
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
	out := &Init{Tracks: map[uint32]*Track{}}
	for _, trak := range moov.Traks {
		t, err := protectTrak(trak, cfg)
		if err != nil {
			return nil, fmt.Errorf("init segment, track %d: %w", trak.Tkhd.TrackID, err)
		}
		if trex, ok := moov.Mvex.GetTrex(t.ID); ok {
			t.DefaultSize = trex.DefaultSampleSize
		}
		out.Tracks[t.ID] = t
		out.Protected = out.Protected || t.Protected
	}
	if !out.Protected {
		out.Data = src
		return out, nil
	}
	for _, p := range psshs {
		box, err := mp4.DecodeBox(0, bytes.NewReader(p.Box))
		if err != nil {
			return nil, fmt.Errorf("pssh of %s: %w", p.DRM, err)
		}
		moov.AddChild(box)
	}
	var buf bytes.Buffer
	if err := f.Init.Encode(&buf); err != nil {
		return nil, fmt.Errorf("init segment: encoding: %w", err)
	}
	out.Data = buf.Bytes()
	return out, nil
}

func protectTrak(trak *mp4.TrakBox, cfg *Config) (*Track, error) {
	t := &Track{ID: trak.Tkhd.TrackID}
	stsd := trak.Mdia.Minf.Stbl.Stsd
	if len(stsd.Children) != 1 {
		return nil, fmt.Errorf("%d sample descriptions (want 1)", len(stsd.Children))
	}
	sinf := &mp4.SinfBox{}
	var tenc *mp4.TencBox
	switch se := stsd.Children[0].(type) {
	case *mp4.VisualSampleEntryBox:
		format := se.Type()
		var err error
		switch format {
		case "avc1", "avc3":
			if se.AvcC == nil {
				return nil, fmt.Errorf("%s without avcC", format)
			}
			t.protRanges, err = avcRanges(se.AvcC)
		case "hvc1", "hev1":
			if se.HvcC == nil {
				return nil, fmt.Errorf("%s without hvcC", format)
			}
			t.protRanges, err = hevcRanges(se.HvcC)
		case "encv":
			return nil, fmt.Errorf("the source is already encrypted (encv)")
		default:
			return nil, fmt.Errorf("video sample entry %q cannot be encrypted (AVC and HEVC can)", format)
		}
		if err != nil {
			return nil, err
		}
		t.Video, t.Protected = true, true
		se.SetType("encv")
		sinf.AddChild(&mp4.FrmaBox{DataFormat: format})
		se.AddChild(sinf)
		tenc = videoTenc(cfg)
	case *mp4.AudioSampleEntryBox:
		format := se.Type()
		if format == "enca" {
			return nil, fmt.Errorf("the source is already encrypted (enca)")
		}
		if !cfg.EncryptAudio {
			return t, nil
		}
		t.Protected = true
		se.SetType("enca")
		sinf.AddChild(&mp4.FrmaBox{DataFormat: format})
		se.AddChild(sinf)
		tenc = audioTenc(cfg)
	default:
		return t, nil // text and data tracks stay clear
	}
	sinf.AddChild(&mp4.SchmBox{SchemeType: string(cfg.Scheme), SchemeVersion: 0x10000})
	schi := &mp4.SchiBox{}
	schi.AddChild(tenc)
	sinf.AddChild(schi)
	return t, nil
}

func videoTenc(cfg *Config) *mp4.TencBox {
	if cfg.Scheme == CBCS {
		return &mp4.TencBox{Version: 1, DefaultCryptByteBlock: 1, DefaultSkipByteBlock: 9, DefaultIsProtected: 1,
			DefaultKID: mp4.UUID(cfg.KID[:]), DefaultConstantIV: cfg.ConstantIV}
	}
	return &mp4.TencBox{DefaultIsProtected: 1, DefaultPerSampleIVSize: ivSize, DefaultKID: mp4.UUID(cfg.KID[:])}
}

func audioTenc(cfg *Config) *mp4.TencBox {
	if cfg.Scheme == CBCS {
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
