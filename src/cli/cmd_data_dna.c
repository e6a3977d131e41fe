/* cmd_data_dna.c: `derf data dna`: builds the DNA pretraining corpus (human chr22 with coordinate-bin
 * splits) and the classification tasks from the genomes `make deps` installs (see docs/dna.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "derf/dna.h"
#include "derf/io.h"

int cmd_data_dna(int argc, char **argv) {
    derf_dna_build_opts o = {0};
    int seed = 1;
    const cli_opt opts[] = {
        {"maf", CLI_STR, &o.maf, "human chr22 MAF alignment (maffilter-examples); default " DERF_DNA_MAF_DEFAULT, 0, -1},
        {"ragout", CLI_STR, &o.ragout, "ragout examples folder (bacterial references); default " DERF_DNA_RAGOUT_DEFAULT, 0, -1},
        {"dmel", CLI_STR, &o.dmel, "dm3 upstream2000 FASTA (r-bioc-biostrings); default " DERF_DNA_DMEL_DEFAULT ", skipped with a warning when missing", 0, -1},
        {"promoter-len", CLI_INT, &o.promoter_len, "bases per window of the Drosophila promoter task (default 300)", 1, 1000},
        {"umaydis", CLI_STR, &o.umaydis, "U. maydis genome FASTA (maffilter-examples), the out-of-distribution corpus; default "
                                           DERF_DNA_UMAYDIS_DEFAULT ", skipped with a warning when missing", 0, -1},
        {"out", CLI_STR, &o.out, "output folder (default runs/data/dna)", 0, -1},
        {"seed", CLI_INT, &seed, "seed of the task window sampling", 0, 1 << 30},
        {"quiet", CLI_FLAG, &o.quiet, "no summary lines", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"data dna", "[options]",
        "Build the DNA data: human_chr22.dnac (pretraining corpus; 1-Mbp coordinate bins, bin%10==0 test, ==5 val,\n"
        "10 kb dropped at every bin border), human_repeat_500.dnat (soft-masked repeat vs not, case removed from the\n"
        "input, split by the same bins) and bact_species_200.dnat (4 species from 200-bp fragments, whole strains held\n"
        "out for test) and, when the r-bioc-biostrings file is there, dmel_promoter_300.dnat (the 300 bp upstream of\n"
        "Drosophila TSSs vs the far end of the same 2-kb upstream region; test arm chr3R, val chr2L) and umaydis.dnac\n"
        "(the fungus U. maydis, all test: the out-of-distribution loss of 'derf train-dna --ood-corpus').",
        "Formats and splits: docs/dna.md. Tokens are HyenaDNA's character ids (A7 C8 G9 T10 N11).",
        opts};
    int npos, rc = cli_parse(&cmd, argc, argv, NULL, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    o.seed = (uint64_t)seed;
    char err[DERF_ERRLEN];
    if (derf_dna_build(&o, err, sizeof err)) return cli_fail("data dna", "%s", err);
    return 0;
}
