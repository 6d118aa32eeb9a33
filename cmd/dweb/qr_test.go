package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/uri"
	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
)

// decodeQR reads a QR code from img with gozxing, a ZXing port written
// apart from the encoder. The images here are clean and upright, so it reads
// them as a pure barcode: module by module from the symbol's bounds, with
// no finder-pattern search. (That search misses about 2% of such synthetic
// images, from skip2/go-qrcode and other encoders alike; a camera frame is
// another matter.)
func decodeQR(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("decode QR code: %v", err)
	}
	return res.GetText()
}

// textToImage turns qrText's drawing back into a black-on-white image, a
// few pixels a module: a space is two dark modules (light text on a dark
// background), "█" two light ones, "▀" light over dark, "▄" dark over
// light; invert swaps dark and light. The symbol is square and a side has
// an odd number of modules, so the bottom half of the last line is no
// module: it must be blank (the terminal's background) and is left out.
func textToImage(t *testing.T, text string, invert bool) image.Image {
	t.Helper()
	const scale = 4
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	width := len([]rune(lines[0]))
	if 2*len(lines) != width+1 {
		t.Fatalf("drawing of %d lines of %d columns: want (columns+1)/2 lines", len(lines), width)
	}
	for _, r := range lines[len(lines)-1] {
		if r == '█' || r == '▄' {
			t.Fatalf("last line %q draws in its bottom half", lines[len(lines)-1])
		}
	}
	img := image.NewGray(image.Rect(0, 0, width*scale, width*scale))
	for y, line := range lines {
		runes := []rune(line)
		if len(runes) != width {
			t.Fatalf("line %d is %d columns, line 0 is %d", y, len(runes), width)
		}
		for x, r := range runes {
			var top, bottom bool // light?
			switch r {
			case ' ':
			case '█':
				top, bottom = true, true
			case '▀':
				top = true
			case '▄':
				bottom = true
			default:
				t.Fatalf("unexpected %q at line %d column %d", r, y, x)
			}
			for half, light := range []bool{top, bottom} {
				if 2*y+half == width {
					break
				}
				c := color.Gray{}
				if light != invert {
					c.Y = 255
				}
				for dy := 0; dy < scale; dy++ {
					for dx := 0; dx < scale; dx++ {
						img.SetGray(x*scale+dx, (2*y+half)*scale+dy, c)
					}
				}
			}
		}
	}
	return img
}

// testInvite is an invite like a daemon's: a group, its secret and owner,
// and hints bootstrap hints, all from seed.
func testInvite(t *testing.T, seed byte, hints int) uri.Invite {
	t.Helper()
	r := rand.New(rand.NewChaCha8([32]byte{seed}))
	var b [4][key.Size]byte
	for i := range b {
		for j := range b[i] {
			b[i][j] = byte(r.Uint32())
		}
	}
	keypair := func(seed [key.Size]byte) key.Keypair {
		kp, err := key.KeypairFromSeed(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	inv := uri.Invite{Version: uri.Version, Group: key.RecordKey(b[0]), Secret: key.Secret(b[1]), Owner: keypair(b[2])}
	for i := 0; i < hints; i++ {
		b[3][0] = byte(i)
		inv.Bootstrap = append(inv.Bootstrap, fmt.Sprintf("%s@203.0.113.%d:4433%d", keypair(b[3]).ID(), 10+i, i))
	}
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	return inv
}

// TestQRJoinCodeRendering renders join codes of a daemon's sizes (1 to 4
// bootstrap hints, short and long names) as PNG and as terminal text, and
// reads both back with an independent decoder.
func TestQRJoinCodeRendering(t *testing.T) {
	for n, tc := range []struct {
		hints int
		name  string
	}{
		{1, "Family Photos"},
		{1, "Tom & Jerry = 1+1, Café 日本 📷"},
		{4, "Newsroom"},
		{4, strings.Repeat("é", 127)}, // 254 bytes, 762 encoded
	} {
		inv := testInvite(t, byte(n), tc.hints)
		code, err := joinCode(inv.String(), tc.name)
		if err != nil {
			t.Fatal(err)
		}
		q, err := newQR(code)
		if err != nil {
			t.Fatal(err)
		}
		modules := 17 + 4*q.VersionNumber
		t.Logf("%d hints, name of %d bytes: join code of %d bytes, QR version %d, %d columns", tc.hints, len(tc.name), len(code), q.VersionNumber, modules+8)

		b, err := qrPNG(q)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("PNG does not decode: %v", err)
		}
		if side := (modules + 8) * qrPNGScale; img.Bounds().Dx() != side || img.Bounds().Dy() != side {
			t.Fatalf("PNG is %v, want %d pixels a side", img.Bounds(), side)
		}
		checkDecoded(t, decodeQR(t, img), code, inv, tc.name)

		for _, invert := range []bool{false, true} {
			text := qrText(q, invert)
			if rows, want := strings.Count(text, "\n"), (modules+8+1)/2; rows != want {
				t.Fatalf("terminal drawing has %d rows, want %d", rows, want)
			}
			if qrWidth(q) != modules+8 {
				t.Fatalf("qrWidth = %d, want %d", qrWidth(q), modules+8)
			}
			checkDecoded(t, decodeQR(t, textToImage(t, text, invert)), code, inv, tc.name)
		}
	}
}

func checkDecoded(t *testing.T, got, code string, inv uri.Invite, name string) {
	t.Helper()
	if got != code {
		t.Fatalf("decoded\n%s\nwant\n%s", got, code)
	}
	parsed, err := uri.ParseInvite(got)
	if err != nil {
		t.Fatalf("ParseInvite(decoded): %v", err)
	}
	if parsed.Group != inv.Group || parsed.Secret != inv.Secret || parsed.Name != name {
		t.Fatalf("decoded invite names group %s %q, want %s %q", parsed.Group, parsed.Name, inv.Group, name)
	}
}

func TestJoinCodeRefusesBadName(t *testing.T) {
	inv := testInvite(t, 9, 1)
	if _, err := joinCode(inv.String(), "tab\there"); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Fatalf("joinCode with a tab in the name: %v", err)
	}
	if _, err := joinCode("save+dweb:?v=1", "x"); err == nil {
		t.Fatal("joinCode of a bad invite succeeded")
	}
}

// cliOK returns a runner of dweb with --data data that fails the test
// unless the command exits 0, and returns its stdout.
func cliOK(t *testing.T, data string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--data", data}, args...)...)
		if code != 0 {
			t.Fatalf("dweb %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
}

// TestGroupInviteQR drives `dweb group invite` against a daemon: --png
// writes a PNG that decodes to the join code, --json adds join_code, --qr
// draws it, and the plain form still prints the invite URI.
func TestGroupInviteQR(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, _ := startDaemon(t, ctx)
	cli := cliOK(t, data)
	const name = "Tom & Jerry's photos"
	var g core.GroupInfo
	if err := json.Unmarshal([]byte(cli("--json", "group", "create", name)), &g); err != nil {
		t.Fatal(err)
	}

	plain := strings.TrimSuffix(cli("group", "invite", g.ID.String()), "\n")
	inv, err := uri.ParseInvite(plain)
	if err != nil || inv.Group != g.ID || inv.Name != "" || strings.Contains(plain, "name=") {
		t.Fatalf("plain invite %q: %v", plain, err)
	}
	wantCode := inv.JoinCode(name)

	pngPath := filepath.Join(t.TempDir(), "invite.png")
	var out inviteOutput
	if err := json.Unmarshal([]byte(cli("--json", "group", "invite", name, "--png", pngPath)), &out); err != nil {
		t.Fatal(err)
	}
	if out.Key != g.ID || out.Name != name || out.URI != plain || out.JoinCode != wantCode {
		t.Fatalf("--json: %+v, want join_code %s", out, wantCode)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("PNG mode %v, want 0600", st.Mode().Perm())
	}
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	checkDecoded(t, decodeQR(t, img), wantCode, inv, name)

	drawing := cli("group", "invite", g.ID.String(), "--qr")
	checkDecoded(t, decodeQR(t, textToImage(t, drawing, false)), wantCode, inv, name)

	if got := cli("group", "invite", g.ID.String(), "--png", pngPath); got != "wrote the join code of group "+name+" to "+pngPath+"\n" {
		t.Fatalf("--png output %q", got)
	}

	// A group name with a control character cannot go in a join code: the
	// plain invite still works, --json leaves join_code out, --qr fails.
	var tab core.GroupInfo
	if err := json.Unmarshal([]byte(cli("--json", "group", "create", "tab\there")), &tab); err != nil {
		t.Fatal(err)
	}
	if got := cli("group", "invite", tab.ID.String()); !strings.HasPrefix(got, "save+dweb:?") {
		t.Fatalf("plain invite of %q: %q", "tab\there", got)
	}
	if got := cli("--json", "group", "invite", tab.ID.String()); strings.Contains(got, "join_code") {
		t.Fatalf("--json for %q: %s", "tab\there", got)
	}
	if code, out, errOut := runCLI(t, "--data", data, "group", "invite", tab.ID.String(), "--qr"); code == 0 || out != "" || !strings.Contains(errOut, "control character") {
		t.Fatalf("--qr for %q: exit %d stdout %q stderr %q", "tab\there", code, out, errOut)
	}

	for _, args := range [][]string{
		{"--json", "group", "invite", g.ID.String(), "--qr"},
		{"group", "invite", g.ID.String(), "--invert"},
	} {
		code, out, errOut := runCLI(t, append([]string{"--data", data}, args...)...)
		if code != exitUsage || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d stdout %q stderr %q, want a usage error", args, code, out, errOut)
		}
	}
}

// TestContactCommand drives `dweb contact` against a daemon: the plain
// form prints a contact code that parses, --json and a second call give
// the same one, --qr and --png draw it, and --qr with --json is a usage
// error.
func TestContactCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, _ := startDaemon(t, ctx)
	cli := cliOK(t, data)
	plain := strings.TrimSuffix(cli("contact"), "\n")
	if _, err := uri.ParseContact(plain); err != nil {
		t.Fatalf("dweb contact printed %q: %v", plain, err)
	}
	var c httpapi.ContactInfo
	if err := json.Unmarshal([]byte(cli("--json", "contact")), &c); err != nil || c.Contact != plain {
		t.Fatalf("--json: %+v, %v; want %s", c, err, plain)
	}
	if got := decodeQR(t, textToImage(t, cli("contact", "--qr"), false)); got != plain {
		t.Fatalf("--qr decodes to %q, want %q", got, plain)
	}
	pngPath := filepath.Join(t.TempDir(), "contact.png")
	if got := cli("contact", "--png", pngPath); got != "wrote the contact code to "+pngPath+"\n" {
		t.Fatalf("--png output %q", got)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeQR(t, img); got != plain {
		t.Fatalf("PNG decodes to %q, want %q", got, plain)
	}
	if code, out, errOut := runCLI(t, "--data", data, "--json", "contact", "--qr"); code != exitUsage || out != "" {
		t.Fatalf("--json --qr: exit %d stdout %q stderr %q, want a usage error", code, out, errOut)
	}
}
