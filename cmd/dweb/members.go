package main

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/spf13/cobra"
)

// membersCmds are the group subcommands of membership-checked groups
// (docs/trust.md): members, remove, role.
func (a *app) membersCmds() []*cobra.Command {
	members := &cobra.Command{
		Use:   "members GROUP",
		Short: "list the members of a membership-checked group: role, name, key",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var m core.MembershipInfo
			if err := a.client().call(cmd.Context(), http.MethodGet, membersPath(args[0]), nil, &m); err != nil {
				return err
			}
			return a.printMembership(m)
		},
	}
	remove := &cobra.Command{
		Use:   "remove GROUP MEMBER",
		Short: "remove a member for good (MEMBER: contact code, key or unique name); the group moves to a new key",
		Long: `remove takes MEMBER out of the group's membership list and starts the
group's next epoch: a fresh group key, sealed to every remaining member and
not to MEMBER, so that nothing written from now on can be read by it, its
repo is no longer listed, and its tunnels are refused. What it already
downloaded stays on its device. This device must be an admin; the last
admin cannot remove itself.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var m core.MembershipInfo
			if err := a.client().call(cmd.Context(), http.MethodDelete, membersPath(args[0])+"/"+url.PathEscape(args[1]), nil, &m); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(m)
			}
			fmt.Fprintf(a.stdout, "removed %s: the group is now at epoch %d, list version %d\n", args[1], m.Epoch, m.Version)
			return nil
		},
	}
	role := &cobra.Command{
		Use:   "role GROUP MEMBER ROLE",
		Short: "give a member the role admin or member (a viewer stays a viewer)",
		Args:  args(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var m core.MembershipInfo
			if err := a.client().call(cmd.Context(), http.MethodPost, membersPath(args[0])+"/"+url.PathEscape(args[1])+"/role", httpapi.RoleRequest{Role: args[2]}, &m); err != nil {
				return err
			}
			return a.printMembership(m)
		},
	}
	ping := &cobra.Command{
		Use:   "ping GROUP",
		Short: "open a tunnel to every member node of GROUP and say which answered, refused or could not be reached",
		Long: `ping opens a tunnel to every member node of GROUP whose descriptor this node
can read, and to those it read one of before, at once (10 s each), and
prints NODE REPO RESULT RTT: ok (the handshake completed), refused (the node
answered and refused: this node and it do not share the group's current
key, as after a removal) or unreachable. STALE marks a node whose current
descriptor this node can no longer read. --json: {"members":[{"repo_key",
"node_id","result","rtt_ms","stale","error"}...]}.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body httpapi.PingBody
			if err := a.client().call(cmd.Context(), http.MethodGet, "/dweb/v1/groups/"+url.PathEscape(args[0])+"/ping", nil, &body); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(body)
			}
			tw := a.table()
			fmt.Fprintln(tw, "NODE\tREPO\tRESULT\tRTT\tSTALE")
			for _, p := range body.Members {
				stale := ""
				if p.Stale {
					stale = "stale"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f ms\t%s\n", p.Node, p.Repo, p.Result, p.RTTMs, stale)
			}
			return tw.Flush()
		},
	}
	return []*cobra.Command{members, remove, role, ping}
}

func membersPath(group string) string { return "/dweb/v1/groups/" + url.PathEscape(group) + "/members" }

func (a *app) printMembership(m core.MembershipInfo) error {
	if a.json {
		return a.printJSON(m)
	}
	if m.Removed {
		fmt.Fprintln(a.stdout, "this device was removed from the group; the list below is the last one it read")
	}
	fmt.Fprintf(a.stdout, "list version %d, epoch %d\n", m.Version, m.Epoch)
	tw := a.table()
	fmt.Fprintln(tw, "NAME\tROLE\tKEY\tSELF")
	for _, x := range m.Members {
		self := ""
		if x.Self {
			self = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.Name, x.Role, x.Key, self)
	}
	return tw.Flush()
}
