package syncml

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// Cross-checks with libwbxml (Debian libwbxml2-utils), an independent WBXML codec: our WBXML
// must read back through wbxml2xml as the source XML's element tree, and whatever xml2wbxml
// produces must decode to the same model as the XML.

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed; CI must install libwbxml2-utils", name)
		}
		t.Skipf("%s not installed (apt-get install libwbxml2-utils); skipping outside CI", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func TestOurWBXMLReadByLibwbxml(t *testing.T) {
	wbxml2xml := requireTool(t, "wbxml2xml")
	dir, names := messageVectors(t)
	tmp := t.TempDir()
	for _, name := range names {
		for _, opt := range []WBXMLOptions{{}, {Version: 3}, {FPIInStringTable: true}} {
			t.Run(name, func(t *testing.T) {
				src := readFile(t, filepath.Join(dir, name+".xml"))
				m, err := DecodeXML(src, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				b, err := AppendWBXML(nil, m, opt)
				if err != nil {
					t.Fatal(err)
				}
				in := filepath.Join(tmp, name+".wbxml")
				out := filepath.Join(tmp, name+".out.xml")
				if err := os.WriteFile(in, b, 0o600); err != nil {
					t.Fatal(err)
				}
				run(t, wbxml2xml, "-o", out, in)
				got := parseXNode(t, string(readFile(t, out)), true)
				want := parseXNode(t, string(src), true)
				if !sameXNode(got, want) {
					t.Fatalf("wbxml2xml read our WBXML (%+v) as\n%s\nwant\n%s", opt, got, want)
				}
			})
		}
	}
}

func TestLibwbxmlOutputDecodes(t *testing.T) {
	xml2wbxml := requireTool(t, "xml2wbxml")
	dir, names := messageVectors(t)
	tmp := t.TempDir()
	for _, name := range names {
		for _, flags := range [][]string{nil, {"-n", "-v", "1.2"}, {"-v", "1.1"}} {
			t.Run(name, func(t *testing.T) {
				src := filepath.Join(dir, name+".xml")
				want, err := DecodeXML(readFile(t, src), Limits{})
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(tmp, name+".wbxml")
				run(t, xml2wbxml, append(append([]string{}, flags...), "-o", out, src)...)
				got, err := DecodeWBXML(readFile(t, out), Limits{})
				if err != nil {
					t.Fatalf("xml2wbxml %v output: %v", flags, err)
				}
				if !reflect.DeepEqual(normalised(got), normalised(want)) {
					t.Fatalf("xml2wbxml %v output decodes differently\n got %+v\nwant %+v", flags, got, want)
				}
			})
		}
	}
}

// TestWBXMLBytesMatchLibwbxml: for every vector, libwbxml's encoding (xml2wbxml -n -v 1.2)
// of our XML output is byte-for-byte our WBXML output. (Our encoders write elements in DTD
// order, so the comparison starts from our XML rather than the hand-written vector, some of
// which put Type before Format.)
func TestWBXMLBytesMatchLibwbxml(t *testing.T) {
	xml2wbxml := requireTool(t, "xml2wbxml")
	dir, names := messageVectors(t)
	tmp := t.TempDir()
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			m, err := DecodeXML(readFile(t, filepath.Join(dir, name+".xml")), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			x, err := AppendXML(nil, m, XMLOptions{Indent: "  "})
			if err != nil {
				t.Fatal(err)
			}
			w, err := AppendWBXML(nil, m, WBXMLOptions{})
			if err != nil {
				t.Fatal(err)
			}
			in := filepath.Join(tmp, name+".xml")
			out := filepath.Join(tmp, name+".wbxml")
			if err := os.WriteFile(in, x, 0o600); err != nil {
				t.Fatal(err)
			}
			run(t, xml2wbxml, "-n", "-v", "1.2", "-o", out, in)
			if lib := readFile(t, out); !bytes.Equal(lib, w) {
				t.Fatalf("libwbxml encodes our XML as\n% x\nwe encode\n% x", lib, w)
			}
		})
	}
}
