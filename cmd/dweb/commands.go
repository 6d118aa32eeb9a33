package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/uri"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// progressBarMin is the least file size for which `file get` draws a
// progress bar (and only when stderr is a terminal).
const progressBarMin = 16 << 20

// printJSON writes v as one JSON value on one line of stdout.
func (a *app) printJSON(v any) error {
	return json.NewEncoder(a.stdout).Encode(v)
}

// printResult writes a command's result: v with --json (printJSON),
// otherwise the text that format and args make (fmt.Fprintf).
func (a *app) printResult(v any, format string, args ...any) error {
	if a.json {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.stdout, format, args...)
	return nil
}

func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func (a *app) groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "create, join, list, invite to and sync groups"}

	var createRepoName string
	var createChecked bool
	create := &cobra.Command{
		Use:   "create NAME [--repo-name REPO] [--checked]",
		Short: "create a group and print its key",
		Long: `create makes a group named NAME with this node's repo in it.

--checked makes a membership-checked group (docs/trust.md): this device is
its first admin; members are added one by one with "dweb group invite GROUP
--for CONTACT", each invite usable only by that person's device; "dweb group
remove" removes a member for good (a new group key that the removed member
cannot open). Without --checked the group is of the Save app's kind: its
invite carries the group's keys and works for whoever holds it.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if createRepoName != "" {
				if err := checkRepoName("--repo-name", createRepoName); err != nil {
					return err
				}
			}
			var g httpapi.Group
			if err := a.client().call(cmd.Context(), http.MethodPost, "/api/groups", httpapi.CreateGroupRequest{Name: args[0], RepoName: createRepoName, Checked: createChecked}, &g); err != nil {
				return err
			}
			return a.printResult(g, "created group %s %s\n", g.Name, g.ID)
		},
	}
	create.Flags().StringVar(&createRepoName, "repo-name", "", "name of this node's repo in the group (default: the device name)")
	create.Flags().BoolVar(&createChecked, "checked", false, "make a membership-checked group: members, roles, invites for one person, removal (docs/trust.md)")

	var inviteQR, inviteInvert bool
	var invitePNG, inviteFor, inviteRole, inviteMemberName, inviteRevoke, inviteReplace string
	var inviteUses int
	var inviteExpires time.Duration
	invite := &cobra.Command{
		Use:   "invite GROUP",
		Short: "print the invite URI of a group, or draw its join code as a QR code (GROUP: key or unique name)",
		Long: `invite prints the group's save+dweb: invite URI.

--qr draws the Save app's join code for the group (the invite URI, "&name="
and the group name) as a QR code on the terminal, for the app to scan;
--png FILE writes that QR code as a PNG image (mode 0600: it holds the group
secret). --json prints {"key","name","uri","join_code"}.

In a membership-checked group (create --checked) an invite is made for one
person: --for CONTACT (the contact code "dweb contact" prints on their
device) adds them to the members as --role (member, viewer or admin;
default member) named --member-name, and prints an invite that only their
device can use. It carries no key: showing it to anyone else gives nothing.
--uses N and/or --expires DURATION make a bearer invite instead (the Save
app's QR flow): whoever holds it can join as --role (member or admin), N
times (default 1, at most 16), until DURATION from now (default 168h, at
most 2160h); an admin's node then hands each use over to its joiner's own
key. --revoke URI makes a bearer invite unusable (its uses not yet taken).
--for CONTACT --replace MEMBER moves MEMBER to a new device: the device of
CONTACT takes its entry, role, name and files over, and the old device can
no longer write or read anything new (a new epoch). Do it once the
member's files are held by another member or a backup server: the old
device no longer serves them.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkQRFlags(inviteQR, inviteInvert); err != nil {
				return err
			}
			var inv httpapi.InviteInfo
			bearer := cmd.Flags().Changed("uses") || cmd.Flags().Changed("expires")
			switch {
			case inviteFor != "" && (bearer || inviteRevoke != ""):
				return &usageError{errors.New("--for makes an invite for one person: it cannot go with --uses, --expires or --revoke")}
			case inviteFor == "" && !bearer && (inviteRole != "" || inviteMemberName != ""):
				return &usageError{errors.New("--role goes with --for CONTACT or a bearer invite (--uses/--expires); --member-name with --for")}
			case inviteReplace != "" && (inviteFor == "" || inviteRole != "" || inviteMemberName != ""):
				return &usageError{errors.New("--replace MEMBER goes with --for CONTACT (the new device), without --role or --member-name (it keeps the member's)")}
			case bearer && inviteMemberName != "":
				return &usageError{errors.New("--member-name goes with --for: a bearer invite's joiner names itself")}
			case inviteUses < 0 || inviteExpires < 0:
				return &usageError{errors.New("--uses and --expires must not be negative")}
			}
			if inviteRevoke != "" {
				var m core.MembershipInfo
				if err := a.client().call(cmd.Context(), http.MethodPost, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/invites/revoke", httpapi.RevokeRequest{URI: inviteRevoke}, &m); err != nil {
					return err
				}
				if a.json {
					return a.printJSON(m)
				}
				fmt.Fprintf(a.stdout, "revoked the invite: the group is now at epoch %d, list version %d\n", m.Epoch, m.Version)
				return nil
			}
			if bearer {
				req := httpapi.BearerInviteRequest{Role: inviteRole, Uses: inviteUses, ExpiresS: int64(inviteExpires / time.Second)}
				if err := a.client().call(cmd.Context(), http.MethodPost, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/invites", req, &inv); err != nil {
					return err
				}
			} else if inviteFor != "" {
				if _, err := uri.ParseContact(inviteFor); err != nil {
					return &usageError{fmt.Errorf("--for: %w", err)}
				}
				var mi httpapi.MemberInviteInfo
				req := httpapi.InviteMemberRequest{Contact: inviteFor, Role: inviteRole, Name: inviteMemberName, Replace: inviteReplace}
				if err := a.client().call(cmd.Context(), http.MethodPost, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/members", req, &mi); err != nil {
					return err
				}
				inv = httpapi.InviteInfo{Key: mi.Key, Name: mi.Name, URI: mi.URI}
			} else if err := a.client().call(cmd.Context(), http.MethodGet, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/invite", nil, &inv); err != nil {
				return err
			}
			draw := inviteQR || invitePNG != ""
			if !draw && !a.json {
				fmt.Fprintln(a.stdout, inv.URI)
				return nil
			}
			out := inviteOutput{InviteInfo: inv}
			code, err := joinCode(inv.URI, inv.Name)
			switch {
			case err == nil:
				out.JoinCode = code
			case draw:
				return err
			}
			if draw {
				if err := a.drawJoinCode(code, inviteQR, inviteInvert, invitePNG); err != nil {
					return err
				}
			}
			switch {
			case a.json:
				return a.printJSON(out)
			case !inviteQR:
				fmt.Fprintf(a.stdout, "wrote the join code of group %s to %s\n", inv.Name, invitePNG)
			}
			return nil
		},
	}
	invite.Flags().BoolVar(&inviteQR, "qr", false, "draw the Save app's join code as a QR code on the terminal")
	invite.Flags().BoolVar(&inviteInvert, "invert", false, "with --qr: draw for dark text on a light background")
	invite.Flags().StringVar(&invitePNG, "png", "", "write the Save app's join code as a QR code PNG image to `FILE`")
	invite.Flags().StringVar(&inviteFor, "for", "", "membership-checked group: add the person of contact code `CONTACT` and make an invite only they can use")
	invite.Flags().StringVar(&inviteRole, "role", "", "with --for: member, viewer or admin (default member)")
	invite.Flags().StringVar(&inviteMemberName, "member-name", "", "with --for: the new member's display name")
	invite.Flags().IntVar(&inviteUses, "uses", 0, "membership-checked group: a bearer invite usable `N` times (default 1, at most 16)")
	invite.Flags().DurationVar(&inviteExpires, "expires", 0, "membership-checked group: a bearer invite usable for `DURATION` (default 168h, at most 2160h)")
	invite.Flags().StringVar(&inviteRevoke, "revoke", "", "membership-checked group: make the bearer invite `URI` unusable")
	invite.Flags().StringVar(&inviteReplace, "replace", "", "with --for: the new device of `MEMBER` (contact code, key or name) takes its entry, role and files over; the old device is out")

	var joinName string
	join := &cobra.Command{
		Use:   "join URI [--name NAME]",
		Short: "join a group from its save+dweb: invite URI, as NAME (default: the device name)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Validate before contacting anything: a bad URI or name is the user's to fix.
			if _, err := uri.ParseInvite(args[0]); err != nil {
				return &usageError{err}
			}
			if joinName != "" {
				if err := checkRepoName("--name", joinName); err != nil {
					return err
				}
			}
			var g httpapi.Group
			if err := a.client().call(cmd.Context(), http.MethodPost, "/api/groups/join_from_url", httpapi.JoinURLRequest{URL: args[0], RepoName: joinName}, &g); err != nil {
				return err
			}
			return a.printResult(g, "joined group %s %s\n", g.Name, g.ID)
		},
	}
	join.Flags().StringVar(&joinName, "name", "", "name of this node's repo in the group, as the other members see it (default: the device name); already a member: renames it")

	list := &cobra.Command{
		Use:   "list",
		Short: "list the groups this node belongs to",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body httpapi.GroupsBody
			if err := a.client().call(cmd.Context(), http.MethodGet, "/api/groups", nil, &body); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(body.Groups)
			}
			tw := a.table()
			fmt.Fprintln(tw, "NAME\tKEY\tCREATED")
			for _, g := range body.Groups {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Name, g.ID, fmtTime(g.CreatedAt))
			}
			return tw.Flush()
		},
	}

	sync := &cobra.Command{
		Use:   "sync GROUP",
		Short: "read every repo of GROUP afresh and download, verified, every file this node lacks",
		Long: `sync reads every repo of GROUP afresh and downloads every file this node
lacks (small files many per request, larger ones four at a time, each from
every member that holds it), then prints per repo how many files it
fetched and which it could not get, with a progress bar on a terminal.
It is the Save app's refresh (POST /api/groups/{group}/refresh,
docs/http-api.md) with progress: POST /dweb/v1/groups/{group}/sync.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var bar *progressbar.ProgressBar
			progress := func(p core.RefreshProgress) {
				if !a.stderrTTY || a.json || p.Files == 0 {
					return
				}
				if bar == nil {
					bar = progressbar.NewOptions64(p.Total,
						progressbar.OptionSetWriter(a.stderr),
						progressbar.OptionShowBytes(true),
						progressbar.OptionSetWidth(30),
						progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }),
						progressbar.OptionSetPredictTime(true),
						progressbar.OptionFullWidth(),
					)
				}
				bar.Describe(fmt.Sprintf("%d/%d files", p.FilesDone, p.Files))
				bar.Set64(p.Done)
			}
			repos, err := a.client().syncGroup(cmd.Context(), url.PathEscape(args[0]), progress)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(repos)
			}
			refs := make([]repoRef, len(repos))
			for i, r := range repos {
				refs[i] = repoRef{r.Key, r.Name}
			}
			labels := repoLabels(refs)
			tw := a.table()
			fmt.Fprintln(tw, "REPO\tFILES\tFETCHED\tFAILED")
			for _, r := range repos {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", labels[r.Key], len(r.AllFiles), len(r.RefreshedFiles), strings.Join(r.FailedFiles, ", "))
			}
			return tw.Flush()
		},
	}

	cmd.AddCommand(create, invite, join, list, sync)
	cmd.AddCommand(a.membersCmds()...)
	return cmd
}

func (a *app) fileCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "file", Short: "add, list, get, remove and restore files of a group"}

	var addNoStoreCopy bool
	add := &cobra.Command{
		Use:   "add GROUP PATH... [--no-store-copy]",
		Short: "add files to this node's repo in GROUP (name = base name)",
		Args:  args(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths := make([]string, 0, len(args)-1)
			for _, p := range args[1:] {
				abs, err := filepath.Abs(p)
				if err != nil {
					return &usageError{fmt.Errorf("path %q: %w", p, err)}
				}
				paths = append(paths, abs)
			}
			var body httpapi.FileInfosBody
			req := httpapi.AddFilesRequest{Paths: paths, NoStoreCopy: addNoStoreCopy}
			if err := a.client().call(cmd.Context(), http.MethodPost, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/files", req, &body); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(body.Files)
			}
			if addNoStoreCopy && len(body.Files) == len(paths) {
				for i, f := range body.Files {
					fmt.Fprintf(a.stdout, "%s  %s (%d bytes, %s)\n", f.Hash, paths[i], f.Size, f.Store)
				}
				return nil
			}
			return a.printFiles(body.Files)
		},
	}
	add.Flags().BoolVar(&addNoStoreCopy, "no-store-copy", false, "keep each file's bytes once on disk: the store hashes PATH and keeps only its outboard (1/256 of its size) and a reference to PATH, serving the file from PATH until PATH changes (edit, move, delete: then the node no longer holds it; add it again); copies a file of at most 16 KiB; docs/cli.md")

	list := &cobra.Command{
		Use:   "list GROUP",
		Short: "list the files of every repo in GROUP",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body httpapi.FileListBody
			if err := a.client().call(cmd.Context(), http.MethodGet, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/files", nil, &body); err != nil {
				return err
			}
			for _, w := range body.Warnings {
				fmt.Fprintln(a.stderr, "warning: "+w)
			}
			if a.json {
				return a.printJSON(body.Files)
			}
			return a.printFiles(body.Files)
		},
	}

	var out, repo, version string
	var noStoreCopy bool
	get := &cobra.Command{
		Use:   "get GROUP NAME [-o PATH] [--repo KEY] [--version N] [--no-store-copy]",
		Short: "download a file of GROUP (verified) to PATH (default ./NAME); --version an older one",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := out
			if dst == "" {
				dst = filepath.Base(args[1])
			}
			abs, err := filepath.Abs(dst)
			if err != nil {
				return &usageError{fmt.Errorf("-o %q: %w", dst, err)}
			}
			if err := checkRepoFlag(repo); err != nil {
				return err
			}
			if err := checkVersionFlag(version, cmd.Flags().Changed("version")); err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			progress := func(done, total int64) {
				if !a.stderrTTY || a.json || total < progressBarMin {
					return
				}
				if bar == nil {
					bar = progressbar.NewOptions64(total,
						progressbar.OptionSetWriter(a.stderr),
						progressbar.OptionSetDescription(args[1]),
						progressbar.OptionShowBytes(true),
						progressbar.OptionShowCount(),
						progressbar.OptionSetWidth(30),
						progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }),
						progressbar.OptionSetPredictTime(true),
						progressbar.OptionFullWidth(),
					)
				}
				bar.Set64(done)
			}
			l, err := a.client().getFile(cmd.Context(), url.PathEscape(args[0]), httpapi.GetFileRequest{Name: args[1], Repo: repo, Out: abs, Version: version, NoStoreCopy: noStoreCopy}, progress)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			got := struct {
				core.FileInfo
				Path string `json:"path"`
			}{*l.File, abs}
			if noStoreCopy {
				return a.printResult(got, "%s  %s (%d bytes, %s)\n", l.File.Hash, abs, l.File.Size, l.File.Export)
			}
			return a.printResult(got, "%s  %s (%d bytes)\n", l.File.Hash, abs, l.File.Size)
		},
	}
	get.Flags().StringVarP(&out, "output", "o", "", "destination path (default ./NAME)")
	get.Flags().BoolVar(&noStoreCopy, "no-store-copy", false, "keep the file's bytes once on disk: move the store's file to PATH (a chunked file: write PATH, then keep its chunks no other file shares as references into PATH), the store serving them from PATH until PATH changes; copies when it cannot (small file, another file system); docs/cli.md")
	get.Flags().StringVar(&repo, "repo", "", "take the file from this repo (record key); default any, own first")
	get.Flags().StringVar(&version, "version", "", versionFlagHelp)

	var histRepo string
	history := &cobra.Command{
		Use:   "history GROUP NAME [--repo KEY]",
		Short: "list the versions of a file of GROUP, newest first (deletions included)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRepoFlag(histRepo); err != nil {
				return err
			}
			path := "/dweb/v1/groups/" + url.PathEscape(args[0]) + "/files/" + url.PathEscape(args[1]) + "/history"
			if histRepo != "" {
				path += "?repo=" + url.QueryEscape(histRepo)
			}
			var h core.FileHistory
			if err := a.client().call(cmd.Context(), http.MethodGet, path, nil, &h); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(h)
			}
			return a.printHistory(h)
		},
	}
	history.Flags().StringVar(&histRepo, "repo", "", "the file of this repo (record key); default this node's own, then the one other repo that has it")

	var restoreVersion string
	restore := &cobra.Command{
		Use:   "restore GROUP NAME --version N",
		Short: "make an older version of a file of this node's repo in GROUP current again (a deleted file comes back)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkVersionFlag(restoreVersion, true); err != nil {
				return err
			}
			path := "/dweb/v1/groups/" + url.PathEscape(args[0]) + "/files/" + url.PathEscape(args[1]) + "/restore"
			var fi core.FileInfo
			if err := a.client().call(cmd.Context(), http.MethodPost, path, httpapi.RestoreFileRequest{Version: restoreVersion}, &fi); err != nil {
				return err
			}
			return a.printResult(fi, "restored %s  %s (%d bytes)\n", fi.Name, fi.Hash, fi.Size)
		},
	}
	restore.Flags().StringVar(&restoreVersion, "version", "", versionFlagHelp+" (required)")

	rm := &cobra.Command{
		Use:   "rm GROUP NAME",
		Short: "remove a file from this node's repo in GROUP",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/dweb/v1/groups/" + url.PathEscape(args[0]) + "/files/" + url.PathEscape(args[1])
			if err := a.client().call(cmd.Context(), http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			return a.printResult(map[string]string{"status": "success", "removed": args[1]}, "removed %s\n", args[1])
		},
	}

	cmd.AddCommand(add, list, get, rm, history, restore)
	return cmd
}

const versionFlagHelp = "a version of the file: its index in `dweb file history` (0 the current, 1 the one before, ...) or 8 to 64 hex digits of its BLAKE3 hash"

// checkRepoFlag checks a --repo value: empty or a record key.
func checkRepoFlag(repo string) error {
	if repo == "" {
		return nil
	}
	if _, err := key.ParseRecordKey(repo); err != nil {
		return &usageError{fmt.Errorf("--repo: %w", err)}
	}
	return nil
}

// checkVersionFlag checks a --version value the user gave (set): an index
// or a hash prefix, as datarepo.ParseVersionRef reads it.
func checkVersionFlag(v string, set bool) error {
	if !set {
		return nil
	}
	if v == "" {
		return &usageError{errors.New("--version: missing: give an index from `dweb file history` or a hash prefix")}
	}
	if _, err := datarepo.ParseVersionRef(v); err != nil {
		return &usageError{fmt.Errorf("--version: %w", err)}
	}
	return nil
}

// printHistory writes h's versions as a table, newest first.
func (a *app) printHistory(h core.FileHistory) error {
	fmt.Fprintf(a.stdout, "%s in repo %s (%s)\n", h.Name, h.RepoName, h.Repo)
	tw := a.table()
	fmt.Fprintln(tw, "VERSION\tWHEN\tSIZE\tBLAKE3\tLOCAL")
	for _, v := range h.Versions {
		when := "unknown"
		if !v.CreatedAt.IsZero() {
			when = v.CreatedAt.Local().Format(time.DateTime)
		}
		if v.Deleted {
			fmt.Fprintf(tw, "%d\t%s\t-\tdeleted\t-\n", v.Index, when)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%t\n", v.Index, when, v.Size, v.Hash, v.Local)
	}
	return tw.Flush()
}

// printFiles writes fs as a table; REPO is the repo's name, with a short
// key when two repos of the listing share it (repoLabels).
func (a *app) printFiles(fs []core.FileInfo) error {
	refs := make([]repoRef, len(fs))
	for i, f := range fs {
		refs[i] = repoRef{f.Repo, f.RepoName}
	}
	labels := repoLabels(refs)
	tw := a.table()
	fmt.Fprintln(tw, "NAME\tSIZE\tBLAKE3\tREPO\tMINE\tLOCAL")
	pending := ""
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%t\t%t\n", f.Name, f.Size, f.Hash, labels[f.Repo], f.Mine, f.Local)
		if f.Mine && f.Publication != "" {
			pending = f.Publication
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if pending != "" {
		fmt.Fprintf(a.stdout, "your repo's latest change is not published yet (%s): the other members see it once a DHT node takes it\n", pending)
	}
	return nil
}

func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "about the running node"}
	id := &cobra.Command{
		Use:   "id",
		Short: "print the node ID (with --json: node_id, addr, contact)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var n httpapi.NodeInfo
			if err := a.client().call(cmd.Context(), http.MethodGet, "/dweb/v1/node", nil, &n); err != nil {
				return err
			}
			return a.printResult(n, "%s\n", n.NodeID)
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "the node's ID and contact, and its writes waiting to be published (with --json: GET /dweb/v1/node)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var n httpapi.NodeInfo
			if err := a.client().call(cmd.Context(), http.MethodGet, "/dweb/v1/node", nil, &n); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(n)
			}
			fmt.Fprintf(a.stdout, "node %s (%s)\ncontact %s\n", n.NodeID, n.DeviceName, n.Contact)
			if len(n.Publications) == 0 {
				fmt.Fprintln(a.stdout, "publications: none waiting")
				return nil
			}
			groups := map[key.RecordKey]string{}
			var gs httpapi.GroupsBody
			if err := a.client().call(cmd.Context(), http.MethodGet, "/api/groups", nil, &gs); err == nil {
				for _, g := range gs.Groups {
					groups[g.ID] = g.Name
				}
			}
			tw := a.table()
			fmt.Fprintln(tw, "GROUP\tRECORD\tSEQ\tSTATE\tTRIES\tWAITING\tLAST ERROR")
			for _, p := range n.Publications {
				name := groups[p.Group]
				if name == "" {
					name = p.Group.String()
				}
				waiting := "-"
				if !p.Since.IsZero() {
					waiting = time.Since(p.Since).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", name, p.Record, p.Seq, p.State, p.Tries, waiting, p.LastError)
			}
			return tw.Flush()
		},
	}
	gc := &cobra.Command{
		Use:   "gc",
		Short: "remove the blobs no group of this node needs any more: versions its retention dropped, old collections, groups it left (POST /dweb/v1/node/gc)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res core.GCResult
			if err := a.client().call(cmd.Context(), http.MethodPost, "/dweb/v1/node/gc", nil, &res); err != nil {
				return err
			}
			return a.printResult(res, "removed %d blobs: %d blobs, %d bytes before; %d blobs, %d bytes after (%v)\n",
				res.Removed, res.BlobsBefore, res.BytesBefore, res.BlobsAfter, res.BytesAfter, res.Took.Round(time.Millisecond))
		},
	}
	cmd.AddCommand(id, status, gc)
	return cmd
}

// hashLine is one result of `dweb hash --json`.
type hashLine struct {
	Path string `json:"path"`
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

func (a *app) hashCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash PATH...",
		Short: "print BLAKE3-256 of files as b3sum does (no daemon needed)",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var lines []hashLine
			for _, p := range args {
				h, n, err := blobsync.HashFile(p)
				if err != nil {
					return fmt.Errorf("hash %s: %w", p, err)
				}
				if a.json {
					lines = append(lines, hashLine{p, h.String(), n})
					continue
				}
				fmt.Fprintf(a.stdout, "%s  %s\n", h, p)
			}
			if a.json {
				return a.printJSON(lines)
			}
			return nil
		},
	}
}
