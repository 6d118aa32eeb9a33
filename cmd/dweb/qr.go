package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/uri"
	"github.com/skip2/go-qrcode"
	"golang.org/x/term"
)

// inviteOutput is what `group invite --json` prints: the daemon's answer and
// the Save app's join code (left out when the group name cannot go in one).
type inviteOutput struct {
	httpapi.InviteInfo
	JoinCode string `json:"join_code,omitempty"`
}

// qrPNGScale is the size of one QR module in the PNG that `group invite
// --png` writes, in pixels: a join code of 300-500 bytes (version 13-18,
// 69-89 modules plus a 4-module quiet zone each side) makes an image of
// 616-776 pixels a side.
const qrPNGScale = 8

// joinCode returns the Save Android app's join code for an invite URI and
// group name (uri.Invite.JoinCode), checked to parse back: a group name the
// parser would refuse (control characters) is an error here rather than a
// code the other phone cannot use.
func joinCode(inviteURI, name string) (string, error) {
	inv, err := uri.ParseInvite(inviteURI)
	if err != nil {
		return "", fmt.Errorf("the daemon's invite: %w", err)
	}
	code := inv.JoinCode(name)
	if _, err := uri.ParseInvite(code); err != nil {
		return "", fmt.Errorf("group name %q cannot go in a join code: %w", name, err)
	}
	return code, nil
}

// newQR encodes text as a QR code at error-correction level M (15% of the
// symbol may be lost), the smallest version that holds it.
func newQR(text string) (*qrcode.QRCode, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("QR code of %d bytes: %w", len(text), err)
	}
	return q, nil
}

// qrText draws q for a terminal, one line per two rows of modules, with
// the half-block characters ▀ ▄ █ and spaces, the 4-module quiet zone
// included. Light modules are drawn in the text colour, for light text on
// a dark background; invert draws dark modules instead, for dark text on a
// light background.
func qrText(q *qrcode.QRCode, invert bool) string {
	return q.ToSmallString(invert)
}

// qrWidth is the width of qrText's lines in terminal columns.
func qrWidth(q *qrcode.QRCode) int {
	return len(q.Bitmap())
}

// qrPNG renders q as a black-on-white PNG with qrPNGScale pixels a module
// and the quiet zone.
func qrPNG(q *qrcode.QRCode) ([]byte, error) {
	return q.PNG(-qrPNGScale)
}

// drawJoinCode draws code as a QR code on stdout (draw) and/or writes it as
// a PNG file (pngPath, unless empty; created with mode 0600, since the code
// holds the group secret). A drawing wider than the terminal gets a hint on
// stderr.
// checkQRFlags refuses --qr with --json (both write to stdout) and
// --invert without --qr.
func (a *app) checkQRFlags(qr, invert bool) error {
	if qr && a.json {
		return &usageError{errors.New("--qr and --json both write to stdout: use --png FILE with --json")}
	}
	if invert && !qr {
		return &usageError{errors.New("--invert applies to --qr only")}
	}
	return nil
}

func (a *app) drawJoinCode(code string, draw, invert bool, pngPath string) error {
	q, err := newQR(code)
	if err != nil {
		return err
	}
	if pngPath != "" {
		b, err := qrPNG(q)
		if err != nil {
			return fmt.Errorf("render the QR code: %w", err)
		}
		if err := os.WriteFile(pngPath, b, 0o600); err != nil {
			return err
		}
	}
	if draw {
		if f, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols < qrWidth(q) {
				fmt.Fprintf(a.stderr, "dweb: the QR code is %d columns wide and the terminal %d: widen it or use --png FILE\n", qrWidth(q), cols)
			}
		}
		fmt.Fprint(a.stdout, qrText(q, invert))
	}
	return nil
}
