package main

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/spf13/cobra"
)

// shortKeyMin is the fewest characters of a repo key that repoLabels shows
// beside a name two repos share.
const shortKeyMin = 4

// repoRef is a repo as the tables name it: its key and name.
type repoRef struct {
	Key  key.RecordKey
	Name string
}

// repoLabels returns the label of each repo of refs for a table: its name,
// or, when several repos of refs share that name, the name and the
// shortest prefix (at least shortKeyMin characters) of its key that tells
// it from the others, as "phone (Ab3x…)". Members choose their repo's name
// and may choose the same one; the label still shows them apart. A repo
// without a name shows its key.
func repoLabels(refs []repoRef) map[key.RecordKey]string {
	byName := map[string][]string{} // name -> distinct key texts
	seen := map[key.RecordKey]bool{}
	for _, r := range refs {
		if !seen[r.Key] {
			seen[r.Key] = true
			byName[r.Name] = append(byName[r.Name], r.Key.String())
		}
	}
	out := make(map[key.RecordKey]string, len(seen))
	for _, r := range refs {
		keys := byName[r.Name]
		switch {
		case r.Name == "":
			out[r.Key] = r.Key.String()
		case len(keys) == 1:
			out[r.Key] = r.Name
		default:
			k := r.Key.String()
			out[r.Key] = r.Name + " (" + k[:uniquePrefix(keys)] + "…)"
		}
	}
	return out
}

// uniquePrefix returns the least n >= shortKeyMin at which the first n
// characters of every one of the distinct strings ss differ.
func uniquePrefix(ss []string) int {
	n := shortKeyMin
	for ; ; n++ {
		prefixes := make(map[string]bool, len(ss))
		for _, s := range ss {
			if n >= len(s) {
				return len(s)
			}
			prefixes[s[:n]] = true
		}
		if len(prefixes) == len(ss) {
			return n
		}
	}
}

// checkRepoName refuses a bad repo name before the daemon is contacted.
func checkRepoName(flag, name string) error {
	if err := datarepo.CheckName(name); err != nil {
		return &usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	return nil
}

func (a *app) repoCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "repo", Short: "list the repos of a group, rename this node's"}

	list := &cobra.Command{
		Use:   "list GROUP",
		Short: "list the repos of GROUP, read afresh: name, key, and whether it is this node's",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body httpapi.ReposBody
			if err := a.client().call(cmd.Context(), http.MethodGet, "/api/groups/"+url.PathEscape(args[0])+"/repos", nil, &body); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(body.Repos)
			}
			refs := make([]repoRef, len(body.Repos))
			for i, r := range body.Repos {
				refs[i] = repoRef{r.Key, r.Name}
			}
			labels := repoLabels(refs)
			tw := a.table()
			fmt.Fprintln(tw, "NAME\tKEY\tMINE")
			for _, r := range body.Repos {
				fmt.Fprintf(tw, "%s\t%s\t%t\n", labels[r.Key], r.Key, r.CanWrite)
			}
			return tw.Flush()
		},
	}

	rename := &cobra.Command{
		Use:   "rename GROUP NAME",
		Short: "name this node's repo in GROUP (other members see it at their next listing)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRepoName("NAME", args[1]); err != nil {
				return err
			}
			var ri core.RepoInfo
			if err := a.client().call(cmd.Context(), http.MethodPost, "/api/groups/"+url.PathEscape(args[0])+"/repos", httpapi.NameRequest{Name: args[1]}, &ri); err != nil {
				return err
			}
			return a.printResult(ri, "renamed repo %s to %s\n", ri.Key, ri.Name)
		},
	}

	cmd.AddCommand(list, rename)
	return cmd
}
