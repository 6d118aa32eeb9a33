package main

import (
	"fmt"
	"net/http"

	"github.com/dwebkit/dweb/httpapi"
	"github.com/spf13/cobra"
)

// contactCmd is `dweb contact`: this device's contact code.
func (a *app) contactCmd() *cobra.Command {
	var qr, invert bool
	var png string
	cmd := &cobra.Command{
		Use:   "contact",
		Short: "print this device's contact code, the public half of its member key, or draw it as a QR code",
		Long: `contact prints this device's contact code (dweb-contact:1:...): the
public half of its member key, made on first use and kept with the node's
secrets. It holds nothing secret. Group admins will use it to make an
invite that only this device can open (docs/trust.md).

--qr draws it as a QR code on the terminal; --png FILE writes that QR code
as a PNG image. --json prints {"contact"}.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.checkQRFlags(qr, invert); err != nil {
				return err
			}
			var c httpapi.ContactInfo
			if err := a.client().call(cmd.Context(), http.MethodGet, "/dweb/v1/contact", nil, &c); err != nil {
				return err
			}
			if qr || png != "" {
				if err := a.drawJoinCode(c.Contact, qr, invert, png); err != nil {
					return err
				}
			}
			switch {
			case a.json:
				return a.printJSON(c)
			case png != "" && !qr:
				fmt.Fprintf(a.stdout, "wrote the contact code to %s\n", png)
			case !qr:
				fmt.Fprintln(a.stdout, c.Contact)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&qr, "qr", false, "draw the contact code as a QR code on the terminal")
	cmd.Flags().BoolVar(&invert, "invert", false, "with --qr: draw for dark text on a light background")
	cmd.Flags().StringVar(&png, "png", "", "write the contact code as a QR code PNG image to `FILE`")
	return cmd
}
