package syncml

import (
	"encoding/xml"
	"path/filepath"
	"testing"
	"time"
)

// The reference decoder: encoding/xml Unmarshal into plain struct tags, the approach other
// Go MDM servers take (one slice per command type, so document order across command kinds
// is lost; it does even less work than we do).
type refMeta struct {
	Format     string `xml:"Format"`
	Type       string `xml:"Type"`
	Mark       string `xml:"Mark"`
	Size       string `xml:"Size"`
	NextNonce  string `xml:"NextNonce"`
	MaxMsgSize string `xml:"MaxMsgSize"`
	MaxObjSize string `xml:"MaxObjSize"`
}

type refLoc struct {
	LocURI  string `xml:"LocURI"`
	LocName string `xml:"LocName"`
}

type refItem struct {
	Target   *refLoc   `xml:"Target"`
	Source   *refLoc   `xml:"Source"`
	Meta     *refMeta  `xml:"Meta"`
	Data     *string   `xml:"Data"`
	MoreData *struct{} `xml:"MoreData"`
}

type refCmd struct {
	CmdID     string   `xml:"CmdID"`
	MsgRef    string   `xml:"MsgRef"`
	CmdRef    string   `xml:"CmdRef"`
	Cmd       string   `xml:"Cmd"`
	TargetRef []string `xml:"TargetRef"`
	SourceRef []string `xml:"SourceRef"`
	Meta      *refMeta `xml:"Meta"`
	Chal      *struct {
		Meta *refMeta `xml:"Meta"`
	} `xml:"Chal"`
	Data       string    `xml:"Data"`
	Correlator string    `xml:"Correlator"`
	Items      []refItem `xml:"Item"`
}

type refMessage struct {
	XMLName xml.Name `xml:"SyncML"`
	Hdr     struct {
		VerDTD    string `xml:"VerDTD"`
		VerProto  string `xml:"VerProto"`
		SessionID string `xml:"SessionID"`
		MsgID     string `xml:"MsgID"`
		Target    refLoc `xml:"Target"`
		Source    refLoc `xml:"Source"`
		RespURI   string `xml:"RespURI"`
		Cred      *struct {
			Meta *refMeta `xml:"Meta"`
			Data string   `xml:"Data"`
		} `xml:"Cred"`
		Meta *refMeta `xml:"Meta"`
	} `xml:"SyncHdr"`
	Body struct {
		Add      []refCmd  `xml:"Add"`
		Alert    []refCmd  `xml:"Alert"`
		Atomic   []refCmd  `xml:"Atomic"`
		Delete   []refCmd  `xml:"Delete"`
		Exec     []refCmd  `xml:"Exec"`
		Get      []refCmd  `xml:"Get"`
		Replace  []refCmd  `xml:"Replace"`
		Results  []refCmd  `xml:"Results"`
		Sequence []refCmd  `xml:"Sequence"`
		Status   []refCmd  `xml:"Status"`
		Final    *struct{} `xml:"Final"`
	} `xml:"SyncBody"`
}

// BenchmarkDecode reports each decoder per vector: ours in XML and WBXML and the
// encoding/xml reference.
func BenchmarkDecode(b *testing.B) {
	dir, names := messageVectors(b)
	for _, name := range names {
		x := readFile(b, filepath.Join(dir, name+".xml"))
		w := readFile(b, filepath.Join(dir, name+".wbxml"))
		b.Run(name+"/xml", func(b *testing.B) {
			b.SetBytes(int64(len(x)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeXML(x, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/wbxml", func(b *testing.B) {
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeWBXML(w, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/ref-encoding-xml", func(b *testing.B) {
			b.SetBytes(int64(len(x)))
			b.ReportAllocs()
			for b.Loop() {
				var m refMessage
				if err := xml.Unmarshal(x, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncode reports each encoder per vector, with encoding/xml Marshal of the
// reference struct as the baseline.
func BenchmarkEncode(b *testing.B) {
	dir, names := messageVectors(b)
	for _, name := range names {
		x := readFile(b, filepath.Join(dir, name+".xml"))
		m, err := DecodeXML(x, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		var ref refMessage
		if err := xml.Unmarshal(x, &ref); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, 4096)
		b.Run(name+"/xml", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := AppendXML(buf[:0], m, XMLOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/wbxml", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := AppendWBXML(buf[:0], m, WBXMLOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/ref-encoding-xml", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := xml.Marshal(&ref); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeSpeedup measures ours and the reference interleaved in one benchmark, so
// machine noise hits both alike, and reports the ratios (reference time / our time) as
// xml-speedup and wbxml-speedup. The goals are ≥2 (XML) and ≥4 (WBXML).
func BenchmarkDecodeSpeedup(b *testing.B) {
	dir, names := messageVectors(b)
	for _, name := range names {
		x := readFile(b, filepath.Join(dir, name+".xml"))
		w := readFile(b, filepath.Join(dir, name+".wbxml"))
		b.Run(name, func(b *testing.B) {
			var tx, tw, tr time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := DecodeXML(x, Limits{}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := DecodeWBXML(w, Limits{}); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				var m refMessage
				if err := xml.Unmarshal(x, &m); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				tx += t1.Sub(t0)
				tw += t2.Sub(t1)
				tr += t3.Sub(t2)
			}
			b.ReportMetric(float64(tr)/float64(tx), "xml-speedup")
			b.ReportMetric(float64(tr)/float64(tw), "wbxml-speedup")
			b.ReportMetric(float64(tx.Nanoseconds())/float64(b.N), "xml-ns/op")
			b.ReportMetric(float64(tw.Nanoseconds())/float64(b.N), "wbxml-ns/op")
			b.ReportMetric(float64(tr.Nanoseconds())/float64(b.N), "ref-ns/op")
		})
	}
}

// BenchmarkValidate: validating a message is on every device message's path; a valid one
// must not pay for building element paths.
func BenchmarkValidate(b *testing.B) {
	dir, names := messageVectors(b)
	for _, name := range names {
		m, err := DecodeXML(readFile(b, filepath.Join(dir, name+".xml")), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := Validate(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
