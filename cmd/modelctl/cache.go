package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/humanize"
)

func init() { register(newCacheCmd) }

func newCacheCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List or prune the local blob cache (pulled and pushed models)",
	}
	cmd.AddCommand(newCacheLsCmd(), newCacheTransfersCmd(), newCachePruneCmd())
	return cmd
}

// cacheFlags are the flags of the cache commands.
type cacheFlags struct {
	dir  string
	json bool
}

func (f *cacheFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "cache-dir", "", cacheDirUsage)
	cmd.Flags().BoolVar(&f.json, "json", false, "print the result as JSON")
}

func (f *cacheFlags) open() (*client.Cache, error) {
	c, err := client.New(client.Options{CacheDir: f.dir})
	if err != nil {
		return nil, err
	}
	return c.Cache(), nil
}

func newCacheLsCmd() *cobra.Command {
	var cf cacheFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the cached blobs: size, how many installed files share them, last use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := cf.open()
			if err != nil {
				return err
			}
			blobs, err := cache.Blobs()
			if err != nil {
				return err
			}
			if blobs == nil {
				blobs = []client.CachedBlob{}
			}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), blobs)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DIGEST\tSIZE\tINSTALLS\tLAST USED")
			var total int64
			for _, b := range blobs {
				inst := fmt.Sprint(b.Installs)
				if b.Installs < 0 {
					inst = "?"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", b.Digest, humanize.Bytes(b.Size), inst, b.LastUsed.Local().Format(time.DateTime))
				total += b.Size
			}
			fmt.Fprintf(w, "%d blobs\t%s\t\t%s\n", len(blobs), humanize.Bytes(total), cache.Dir())
			return w.Flush()
		},
	}
	cf.register(cmd)
	return cmd
}

func newCacheTransfersCmd() *cobra.Command {
	var cf cacheFlags
	cmd := &cobra.Command{
		Use:   "transfers",
		Short: "List the uploads and downloads left unfinished (the next push or pull continues them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := cf.open()
			if err != nil {
				return err
			}
			ts, err := cache.Transfers()
			if err != nil {
				return err
			}
			if ts == nil {
				ts = []client.Transfer{}
			}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), ts)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KIND\tDONE\tSIZE\tBLOB OR SESSION")
			for _, t := range ts {
				what := t.Digest.String()
				if t.Kind == "upload" {
					what = client.RedactURL(t.Location)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Kind, humanize.Bytes(t.Done), humanize.Bytes(t.Size), what)
			}
			return w.Flush()
		},
	}
	cf.register(cmd)
	return cmd
}

func newCachePruneCmd() *cobra.Command {
	var cf cacheFlags
	var opts client.PruneOptions
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove cached blobs no installed file uses, and abandoned transfers",
		Long: `Removes the cached blobs that no installed file shares (installs are hardlinks
of the cache) and that were not fetched or installed for --unused, and the
downloads and uploads left unfinished for as long. Installed models never
depend on the cache: pruning costs at most a download again (a rollback to a
pruned version fetches it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := cf.open()
			if err != nil {
				return err
			}
			res, err := cache.Prune(opts)
			if err != nil {
				return err
			}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), res)
			}
			verb := "removed"
			if opts.DryRun {
				verb = "would remove"
			}
			out := cmd.OutOrStdout()
			for _, b := range res.Removed {
				fmt.Fprintf(out, "%s %s (%s, last used %s)\n", verb, b.Digest, humanize.Bytes(b.Size), b.LastUsed.Local().Format(time.DateTime))
			}
			fmt.Fprintf(out, "%s %d blobs (%s) and %d unfinished downloads (%s); kept %d blobs (%s)\n",
				verb, len(res.Removed), humanize.Bytes(res.Freed), res.Partials, humanize.Bytes(res.PartialBytes), res.Kept, humanize.Bytes(res.KeptBytes))
			if res.Unjudged {
				fmt.Fprintln(cmd.ErrOrStderr(), "modelctl: this system cannot tell which blobs are installed: none were removed")
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().DurationVar(&opts.Unused, "unused", 7*24*time.Hour, "remove only what was not used for this long (0: everything unused now)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would be removed, remove nothing")
	return cmd
}
