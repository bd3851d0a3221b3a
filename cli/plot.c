/*
 * plot.c - `mpitrain plot` (see plot.h). Each run's metrics.jsonl (one
 * JSON object per logged step, core/report.c) is read here, its series are
 * written to temporary data files, and gnuplot draws them from a script
 * sent down a pipe. The PNG goes to a temporary name beside --out and is
 * renamed over it only once gnuplot has finished and the file starts with
 * the PNG signature, so --out is either the old file or a whole picture.
 *
 * Why gnuplot (pngcairo) and not matplotlib: one small C program the
 * command drives directly, no Python interpreter or script to locate at
 * run time, and a start in milliseconds; its cairo terminal draws
 * anti-aliased lines and text as well as matplotlib does for four panels.
 */
#include "cli/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "io/files.h"

#define PLOT_MAX_RUNS     24 /* what the legend above the panels shows legibly */
#define PLOT_MAX_WARNINGS 10 /* per file; then one line with the count of the rest */
#define PLOT_WIDTH        1280
#define PLOT_HEIGHT       960
#define PLOT_LABEL_LEN    MT_PATH_LEN
#define PLOT_INSTALL      "install Debian's gnuplot-nox (scripts/install_deps.sh)"

/* Colour-blind-safe, distinct on white (Okabe-Ito, then two more); past
 * the eighth run the colours repeat with another dash pattern. */
static const char *const colours[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                                      "#e69f00", "#56b4e9", "#000000", "#8c564b"};
#define PLOT_COLOURS (int)(sizeof colours / sizeof colours[0])
/* gnuplot dash types of runs 1-8, 9-16, ...: solid, dash-dot, dash-dot-dot,
 * dotted; never 2 (dashes), the validation curves' */
static const int dashes[4] = {1, 3, 5, 4};

/* One logged step; NAN where the record has no (finite) value. */
typedef struct {
    double step, loss, lr, norm, rate, unit_rate, test_loss;
} plot_point;

typedef struct {
    char dir[MT_PATH_LEN];     /* as given */
    char metrics[MT_PATH_LEN]; /* its metrics.jsonl */
    char label[PLOT_LABEL_LEN];
    char run_id[64]; /* from run.json, or "" */
    char unit[32];   /* "tokens" when the run logs tokens_per_s, or "" */
    plot_point *pts; /* [n] */
    size_t n, cap, n_eval;
} plot_run;

typedef struct {
    const char *out, *title;
    const char *dirs[PLOT_MAX_RUNS];
    int n_dirs;
} plot_args;

static void usage(FILE *out) {
    fprintf(out,
            "usage: mpitrain plot RUN_DIR... --out FILE.png [--title T]\n"
            "\n"
            "Draws the runs' metrics against step into one PNG of four panels: loss\n"
            "(train as a line, validation as dashed line with circles where the run\n"
            "evaluated), learning rate, throughput (tokens/s when every run logs them,\n"
            "else samples/s) and gradient norm. Several runs share the panels, each in\n"
            "its own colour, named in the legend by its folder (NAME/NNNN).\n"
            "\n"
            "  RUN_DIR      a run folder (run.dir/run.name/NNNN, holding metrics.jsonl),\n"
            "               or a metrics .jsonl file itself; up to %d\n"
            "  --out FILE   the PNG to write (%dx%d), replaced atomically\n"
            "  --title T    the picture's title (default: the run, or the number of runs)\n"
            "  -h, --help   print this help\n"
            "\n"
            "A metrics line that is not a JSON object with a step (a truncated or\n"
            "corrupt line) is skipped with a warning naming the file and line. Needs\n"
            "gnuplot with its pngcairo terminal on PATH (Debian gnuplot-nox). Runs\n"
            "still training can be plotted: the lines written so far are drawn.\n"
            "\n"
            "Exit status: 0 written, 2 usage, an unwritable --out or no usable gnuplot,\n"
            "3 a run without metrics.\n",
            PLOT_MAX_RUNS, PLOT_WIDTH, PLOT_HEIGHT);
}

static int parse_args(int argc, char **argv, plot_args *a, mt_err *e) {
    for (int i = 1; i < argc && !e->code; i++) {
        const char *arg = argv[i];
        const char **slot = strncmp(arg, "--out", 5) == 0     ? &a->out
                            : strncmp(arg, "--title", 7) == 0 ? &a->title
                                                              : NULL;
        size_t n = slot == &a->out ? 5 : 7;
        if (slot && (arg[n] == '\0' || arg[n] == '=')) {
            if (*slot) return mt_err_set(e, MT_ERR_USAGE, "option %.*s given twice", (int)n, arg);
            if (arg[n] == '=')
                *slot = arg + n + 1;
            else if (i + 1 < argc)
                *slot = argv[++i];
            else
                return mt_err_set(e, MT_ERR_USAGE, "option %s needs a value", arg);
        } else if (arg[0] == '-' && arg[1] != '\0') {
            mt_err_set(e, MT_ERR_USAGE, "unknown option '%s' for mpitrain plot", arg);
            mt_err_hint(e, "mpitrain plot RUN_DIR... --out FILE.png [--title T]");
        } else if (a->n_dirs == PLOT_MAX_RUNS) {
            mt_err_set(e, MT_ERR_USAGE, "mpitrain plot takes at most %d runs", PLOT_MAX_RUNS);
        } else {
            a->dirs[a->n_dirs++] = arg;
        }
    }
    if (!e->code && a->n_dirs == 0) {
        mt_err_set(e, MT_ERR_USAGE, "mpitrain plot needs at least one run folder");
        mt_err_hint(e, "for example: mpitrain plot runs/mnist_mlp/0001 --out mnist.png");
    } else if (!e->code && (!a->out || !a->out[0])) {
        mt_err_set(e, MT_ERR_USAGE, "mpitrain plot needs --out FILE.png");
    }
    return e->code;
}

/* ---- reading a run ---- */

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
}

/* The legend's name: "NAME/NNNN" for a numbered run folder, else the
 * folder's (or file's) last component. */
static void label_of(const char *path, char *out, size_t n) {
    char buf[MT_PATH_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
    char *last = strrchr(buf, '/');
    const char *start = last ? last + 1 : buf;
    if (last && last > buf && strspn(start, "0123456789") == strlen(start) && *start) {
        *last = '\0';
        char *prev = strrchr(buf, '/');
        *last = '/';
        start = prev ? prev + 1 : buf;
    }
    snprintf(out, n, "%s", start);
}

/* Where the run's metrics are, and its label and id. A run folder that is
 * not there is a usage error; one without metrics is a data error. */
static int locate(plot_run *r, const char *dir, mt_err *e) {
    struct stat st;
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    if (stat(dir, &st) != 0)
        return mt_err_set(e, MT_ERR_USAGE, "run folder %s: %s", dir, strerror(errno));
    char folder[MT_PATH_LEN];
    if (S_ISDIR(st.st_mode)) {
        if (mt_path_fmt(r->metrics, sizeof r->metrics, e, "%s/metrics.jsonl", dir)) return e->code;
        snprintf(folder, sizeof folder, "%s", dir);
        label_of(dir, r->label, sizeof r->label);
    } else {
        snprintf(r->metrics, sizeof r->metrics, "%s", dir);
        mt_file_dir(dir, folder, sizeof folder);
        label_of(strcmp(folder, ".") == 0 ? dir : folder, r->label, sizeof r->label);
    }
    int missing = stat(r->metrics, &st) != 0;
    if (missing || !S_ISREG(st.st_mode)) {
        mt_err_set(e, MT_ERR_DATA, "%s has no metrics file (%s: %s)", dir, r->metrics,
                   missing ? strerror(errno) : "not a regular file");
        mt_err_hint(e, "give a run folder that mpitrain train wrote (run.dir/run.name/NNNN)");
        return e->code;
    }
    /* run.json (optional): the run's id, for the summary line */
    char path[MT_PATH_LEN], *text = NULL;
    size_t len;
    mt_err ignore = {0};
    if (mt_path_fmt(path, sizeof path, &ignore, "%s/run.json", folder) == MT_OK &&
        access(path, R_OK) == 0 &&
        mt_file_read(path, "run record", MT_ERR_DATA, &text, &len, &ignore) == MT_OK) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "run_id");
        if (cJSON_IsString(id)) snprintf(r->run_id, sizeof r->run_id, "%s", id->valuestring);
        cJSON_Delete(j);
    }
    free(text);
    return MT_OK;
}

static int add_point(plot_run *r, const cJSON *o, mt_err *e) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        plot_point *p = realloc(r->pts, cap * sizeof *p);
        if (!p) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory reading %s", r->metrics);
        r->pts = p;
        r->cap = cap;
    }
    plot_point *p = &r->pts[r->n++];
    p->step = num(o, "step");
    p->loss = num(o, "loss");
    p->lr = num(o, "lr");
    p->norm = num(o, "grad_norm");
    p->rate = num(o, "samples_per_s");
    p->unit_rate = NAN;
    p->test_loss = num(o, "test_loss");
    /* rows of several labels also log "<unit>_per_s" (tokens for a GPT) */
    for (const cJSON *f = o->child; f; f = f->next) {
        size_t len = strlen(f->string);
        if (len > 6 && len - 6 < sizeof r->unit && strcmp(f->string + len - 6, "_per_s") == 0 &&
            strcmp(f->string, "samples_per_s") != 0 && cJSON_IsNumber(f)) {
            snprintf(r->unit, sizeof r->unit, "%.*s", (int)(len - 6), f->string);
            p->unit_rate = isfinite(f->valuedouble) ? f->valuedouble : NAN;
        }
    }
    r->n_eval += !isnan(p->test_loss);
    return MT_OK;
}

static void warn_line(const plot_run *r, size_t line, const char *why, size_t *warned) {
    if (++*warned <= PLOT_MAX_WARNINGS)
        fprintf(stderr, "mpitrain: warning: %s line %zu: %s (skipped)\n", r->metrics, line, why);
}

/* Reads every line of the run's metrics; a line that is not a JSON object
 * with a finite step is skipped with a warning. */
static int read_run(plot_run *r, mt_err *e) {
    char *text = NULL;
    size_t len = 0, line = 0, warned = 0;
    if (mt_file_read(r->metrics, "metrics file", MT_ERR_DATA, &text, &len, e)) return e->code;
    for (size_t at = 0; at < len && !e->code;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        line++;
        cJSON *o = cJSON_ParseWithLength(text + at, end - at);
        if (!cJSON_IsObject(o))
            warn_line(r, line,
                      nl ? "not a JSON object" : "not a JSON object, the last line cut short",
                      &warned);
        else if (isnan(num(o, "step")))
            warn_line(r, line, "no step number", &warned);
        else
            add_point(r, o, e);
        cJSON_Delete(o);
        at = end + 1;
    }
    free(text);
    if (warned > PLOT_MAX_WARNINGS)
        fprintf(stderr, "mpitrain: warning: %s: %zu more unreadable lines skipped\n", r->metrics,
                warned - PLOT_MAX_WARNINGS);
    if (!e->code && r->n == 0) {
        mt_err_set(e, MT_ERR_DATA, "%s has no usable metrics line (%zu lines)", r->metrics, line);
        mt_err_hint(e, "a run logs a line every train.log_every steps");
    }
    return e->code;
}

/* ---- the picture ---- */

/* s as a gnuplot single-quoted string: quotes doubled, control characters
 * as spaces. */
static void put_str(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
    fputc('\'', f);
}

/* DIR/<kind><k>.dat, quoted for gnuplot ($TMPDIR may hold a quote). */
static void put_file(FILE *f, const char *dir, const char *kind, int k) {
    char path[MT_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/%s%d.dat", dir, kind, k);
    put_str(f, path);
}

static void put_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, " %.9g", v);
    else
        fputs(" NaN", f);
}

/* DIR/run<k>.dat: step loss lr norm rate test_loss (column 5: the
 * throughput plotted); DIR/eval<k>.dat: step test_loss. */
static int write_data(const char *dir, int k, const plot_run *r, int unit, mt_err *e) {
    char path[MT_PATH_LEN];
    if (mt_path_fmt(path, sizeof path, e, "%s/run%d.dat", dir, k)) return e->code;
    FILE *f = fopen(path, "w");
    if (!f) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", path, strerror(errno));
    for (size_t i = 0; i < r->n; i++) {
        const plot_point *p = &r->pts[i];
        fprintf(f, "%.17g", p->step);
        put_num(f, p->loss);
        put_num(f, p->lr);
        put_num(f, p->norm);
        put_num(f, unit ? p->unit_rate : p->rate);
        put_num(f, p->test_loss);
        fputc('\n', f);
    }
    if (fclose(f) != 0) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s", path);
    /* the evaluations alone, so their dashed line joins them (a NaN between
     * two points would break it) */
    if (mt_path_fmt(path, sizeof path, e, "%s/eval%d.dat", dir, k)) return e->code;
    if (!(f = fopen(path, "w")))
        return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", path, strerror(errno));
    for (size_t i = 0; i < r->n; i++)
        if (!isnan(r->pts[i].test_loss))
            fprintf(f, "%.17g %.9g\n", r->pts[i].step, r->pts[i].test_loss);
    if (fclose(f) != 0) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s", path);
    return MT_OK;
}

/* Whether column col (2 loss, 3 lr, 4 norm, 5 rate, 6 test loss) has a
 * finite value in any run; *min and *max get the extremes. */
static int column_has(const plot_run *runs, int n, int col, int unit, double *min, double *max) {
    int any = 0;
    *min = INFINITY;
    *max = -INFINITY;
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < runs[k].n; i++) {
            const plot_point *p = &runs[k].pts[i];
            double v = col == 2   ? p->loss
                       : col == 3 ? p->lr
                       : col == 4 ? p->norm
                       : col == 5 ? (unit ? p->unit_rate : p->rate)
                                  : p->test_loss;
            if (isfinite(v)) {
                any = 1;
                *min = fmin(*min, v);
                *max = fmax(*max, v);
            }
        }
    return any;
}

/* One panel: column col of every run (and, for the loss, column 6 as the
 * validation); a panel with no value at all says so instead of plotting. */
static void panel(FILE *g, const char *dir, const plot_run *runs, int n, int col, int unit,
                  const char *title, const char *ylabel) {
    double min, max, tmin = INFINITY, tmax = -INFINITY;
    int has = column_has(runs, n, col, unit, &min, &max);
    int has_test = col == 2 && column_has(runs, n, 6, unit, &tmin, &tmax);
    fputs("set title ", g);
    put_str(g, title);
    fputs("\nset ylabel ", g);
    put_str(g, ylabel);
    fputs("\n", g);
    if (!has) {
        fputs("set yrange [0:1]\nunset ytics\nset label 1 'no values logged' at graph 0.5,0.5 "
              "center\nplot 2 notitle\nunset label 1\nset ytics\nset yrange [*:*]\n",
              g);
        return;
    }
    /* loss and gradient norm may span decades: a log scale when they do
     * (and every value is positive), else a linear one that is easier to read */
    min = fmin(min, tmin);
    max = fmax(max, tmax);
    int logy = (col == 2 || col == 4) && min > 0 && max > 10 * min;
    fprintf(g, "%s\n", logy ? "set logscale y" : "unset logscale y");
    if (max == min) /* a constant (the learning rate without a schedule): a band around it */
        fprintf(g, "set yrange [%.9g:%.9g]\n", min == 0 ? -1 : min - fabs(min) / 2,
                min == 0 ? 1 : min + fabs(min) / 2);
    fputs("plot ", g);
    for (int k = 0; k < n; k++) {
        char style[160];
        /* few points: mark them, or a run of one logged step draws nothing */
        snprintf(style, sizeof style, "with %s lw 2 lc rgb '%s' dt %d",
                 runs[k].n <= 40 ? "linespoints pt 7 ps 0.6" : "lines", colours[k % PLOT_COLOURS],
                 dashes[(k / PLOT_COLOURS) % 4]);
        fputs(k ? ", " : "", g);
        put_file(g, dir, "run", k);
        fprintf(g, " using 1:%d %s ", col, style);
        if (col == 2) {
            fputs("title ", g);
            put_str(g, runs[k].label);
        } else {
            fputs("notitle", g);
        }
        if (has_test && runs[k].n_eval) {
            fputs(", ", g);
            put_file(g, dir, "eval", k);
            fprintf(g, " using 1:2 with linespoints lw 2 lc rgb '%s' dt 2 pt 6 ps 1.2 notitle",
                    colours[k % PLOT_COLOURS]);
        }
    }
    if (has_test) /* the legend's one entry for the validation style */
        fputs(", NaN with linespoints lw 2 lc rgb '#555555' dt 2 pt 6 ps 1.2 title "
              "'validation (dashed, circles)'",
              g);
    fputs("\nunset key\nset yrange [*:*]\n", g);
}

/* The whole gnuplot script: four panels of a 2x2 multiplot, one legend
 * of the runs above them. */
static void script(FILE *g, const char *dir, const plot_run *runs, int n, const char *png,
                   const char *title) {
    int unit = 1; /* tokens/s when every run logs them */
    for (int k = 0; k < n; k++) unit &= runs[k].unit[0] && strcmp(runs[k].unit, runs[0].unit) == 0;
    double x0 = INFINITY, x1 = -INFINITY;
    size_t longest = 0;
    int entries = n; /* the legend's: one a run, one for the validation style */
    for (int k = 0; k < n; k++) {
        entries += runs[k].n_eval && entries == n;
        for (size_t i = 0; i < runs[k].n; i++) {
            x0 = fmin(x0, runs[k].pts[i].step);
            x1 = fmax(x1, runs[k].pts[i].step);
        }
        if (strlen(runs[k].label) > longest) longest = strlen(runs[k].label);
    }
    /* legend: as many columns as fit across, rows of about 22 pixels, the
     * panels below it */
    int cols = (int)(PLOT_WIDTH / (90 + 9 * (longest < 28 ? 28 : longest)));
    cols = cols < 1 ? 1 : cols > entries ? entries : cols;
    int rows = (entries + cols - 1) / cols;
    double top = 0.935 - (rows * 22.0 + 45.0) / PLOT_HEIGHT;
    fprintf(g, "set terminal pngcairo size %d,%d noenhanced font 'DejaVu Sans,11'\n", PLOT_WIDTH,
            PLOT_HEIGHT);
    fputs("set output ", g);
    put_str(g, png);
    fputs("\nset multiplot layout 2,2 title ", g);
    put_str(g, title);
    fprintf(g,
            " font ',15' margins 0.08,0.98,0.07,%.3f spacing 0.09,0.11\n"
            "set grid lc rgb '#dddddd'\nset xlabel 'step'\nset mxtics\n"
            "set xrange [%.17g:%.17g]\nset format y '%%g'\n"
            "set key at screen 0.5,0.935 center top vertical maxrows %d Left reverse "
            "samplen 4 spacing 1.3 width 2 box lc rgb '#bbbbbb'\n",
            top, x0, x1 > x0 ? x1 : x0 + 1, rows);
    panel(g, dir, runs, n, 2, unit, "loss", "loss");
    fputs("set format y '%.1e'\n", g);
    panel(g, dir, runs, n, 3, unit, "learning rate", "learning rate");
    fputs("set format y '%g'\n", g);
    char ylabel[64];
    snprintf(ylabel, sizeof ylabel, "%s/s", unit ? runs[0].unit : "samples");
    panel(g, dir, runs, n, 5, unit, "throughput", ylabel);
    panel(g, dir, runs, n, 4, unit, "gradient norm (before clipping)", "gradient norm");
    fputs("unset multiplot\nset output\n", g);
}

/* gnuplot on PATH, into out; 0 when there is none. */
static int find_gnuplot(char *out, size_t n) {
    const char *path = getenv("PATH");
    for (const char *p = path ? path : ""; *p;) {
        size_t len = strcspn(p, ":");
        if (len && (size_t)snprintf(out, n, "%.*s/gnuplot", (int)len, p) < n &&
            access(out, X_OK) == 0)
            return 1;
        p += len + (p[len] == ':');
    }
    return 0;
}

/* Runs gnuplot with the script from write_script on its stdin and its
 * stderr in err_path; returns its exit status (-1: it could not start). */
static int run_gnuplot(const char *exe, const char *err_path,
                       void (*write_script)(FILE *, const void *), const void *arg) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null = open("/dev/null", O_WRONLY);
        if (err < 0 || null < 0 || dup2(fds[0], 0) < 0 || dup2(null, 1) < 0 || dup2(err, 2) < 0)
            _exit(126);
        close(fds[0]);
        close(fds[1]);
        execl(exe, "gnuplot", (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    FILE *g = fdopen(fds[1], "w");
    if (g) {
        write_script(g, arg);
        fclose(g); /* gnuplot ends at the end of its input */
    } else {
        close(fds[1]);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last non-empty line gnuplot wrote to err_path (its error), trimmed. */
static void last_line(const char *err_path, char *out, size_t n) {
    FILE *f = fopen(err_path, "r");
    char line[512];
    out[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "\r\n")] = '\0';
        if (*s) snprintf(out, n, "%s", s);
    }
    if (f) fclose(f);
}

static void probe_script(FILE *g, const void *arg) {
    (void)arg;
    fputs("set terminal pngcairo\n", g);
}

typedef struct {
    const char *dir, *png, *title;
    const plot_run *runs;
    int n;
} plot_job;

static void job_script(FILE *g, const void *arg) {
    const plot_job *j = arg;
    script(g, j->dir, j->runs, j->n, j->png, j->title);
}

/* gnuplot with pngcairo, or an error saying what to install. */
static int check_gnuplot(char *exe, size_t n, const char *err_path, mt_err *e) {
    if (!find_gnuplot(exe, n))
        return mt_err_set(e, MT_ERR_USAGE,
                          "mpitrain plot needs gnuplot, which is not on PATH: " PLOT_INSTALL);
    if (run_gnuplot(exe, err_path, probe_script, NULL) != 0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "%s has no pngcairo terminal (or does not run): " PLOT_INSTALL, exe);
    return MT_OK;
}

/* Whether the PNG at path ends with its IEND chunk (length 0, "IEND", the
 * chunk's CRC): the whole picture was written. */
static int png_complete(const char *path) {
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    unsigned char tail[12];
    FILE *f = fopen(path, "rb");
    int ok = f && fseek(f, -12, SEEK_END) == 0 && fread(tail, 1, 12, f) == 12 &&
             memcmp(tail, iend, 12) == 0;
    if (f) fclose(f);
    return ok;
}

/* Draws into j->png (already created, so writable) with the gnuplot exe,
 * checks it is a PNG, renames it to out. */
static int draw(const plot_job *j, const char *exe, const char *out, mt_err *e) {
    char err_path[MT_PATH_LEN], why[400];
    if (mt_path_fmt(err_path, sizeof err_path, e, "%s/gnuplot.err", j->dir)) return e->code;
    int rc = run_gnuplot(exe, err_path, job_script, j);
    if (rc != 0) {
        last_line(err_path, why, sizeof why);
        return mt_err_set(e, MT_ERR_USAGE, "gnuplot failed (exit %d) drawing %s: %s", rc, out,
                          why[0] ? why : "no message");
    }
    unsigned char sig[8] = {0};
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(j->png, "rb");
    size_t got = f ? fread(sig, 1, sizeof sig, f) : 0;
    if (f) fclose(f);
    if (got != sizeof sig || memcmp(sig, png_sig, sizeof sig) != 0)
        return mt_err_set(e, MT_ERR_USAGE, "gnuplot wrote no PNG to %s", j->png);
    if (!png_complete(j->png)) /* (a write that failed, the disk full: gnuplot still exits 0) */
        return mt_err_set(e, MT_ERR_USAGE, "gnuplot wrote an incomplete PNG for %s", out);
    return mt_file_commit(j->png, out, e);
}

/* The temporary data folder's files, then the folder. */
static void remove_tmp(const char *dir, int n) {
    char path[MT_PATH_LEN];
    mt_err ignore = {0};
    for (int k = 0; k < n; k++) {
        if (!mt_path_fmt(path, sizeof path, &ignore, "%s/run%d.dat", dir, k)) unlink(path);
        if (!mt_path_fmt(path, sizeof path, &ignore, "%s/eval%d.dat", dir, k)) unlink(path);
    }
    if (!mt_path_fmt(path, sizeof path, &ignore, "%s/gnuplot.err", dir)) unlink(path);
    rmdir(dir);
}

/* Before any reading: the temporary PNG beside out (so an unwritable
 * folder is found first), the data folder, and a gnuplot that has pngcairo.
 * png and dir are "" where they were not made. */
static int prepare(const char *out, char *png, char *dir, char *exe, mt_err *e) {
    struct stat st;
    png[0] = dir[0] = '\0';
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return mt_err_set(e, MT_ERR_USAGE, "--out %s is a folder, not a file name", out);
    if (mt_file_check_out(out, "--out", e)) return e->code;
    char tmp[MT_PATH_LEN];
    mt_file_tmp_name(out, tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", out, strerror(errno));
    close(fd);
    snprintf(png, MT_PATH_LEN, "%s", tmp);
    const char *tmpdir = getenv("TMPDIR");
    for (const char *c = tmpdir ? tmpdir : ""; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) /* (gnuplot's strings could not name it) */
            return mt_err_set(e, MT_ERR_USAGE, "TMPDIR has a control character in its name");
    if (mt_path_fmt(tmp, sizeof tmp, e, "%s/mpitrain-plot.XXXXXX",
                    tmpdir && *tmpdir ? tmpdir : "/tmp"))
        return e->code;
    if (!mkdtemp(tmp))
        return mt_err_set(e, MT_ERR_USAGE, "cannot make a temporary folder %s: %s", tmp,
                          strerror(errno));
    snprintf(dir, MT_PATH_LEN, "%s", tmp);
    char err_path[MT_PATH_LEN];
    if (mt_path_fmt(err_path, sizeof err_path, e, "%s/gnuplot.err", dir)) return e->code;
    return check_gnuplot(exe, MT_PATH_LEN, err_path, e);
}

/* Two runs of one name (the same folder given twice, or NAME/0001 under
 * two run.dir) are told apart by the paths given. */
static void distinct_labels(plot_run *runs, int n) {
    int same[PLOT_MAX_RUNS] = {0};
    for (int k = 0; k < n; k++)
        for (int q = 0; q < n; q++) same[k] |= q != k && strcmp(runs[k].label, runs[q].label) == 0;
    for (int k = 0; k < n; k++)
        if (same[k]) snprintf(runs[k].label, sizeof runs[k].label, "%s", runs[k].dir);
}

/* The runs read: their data into dir, the picture into png, renamed to
 * a->out. */
static int plot_runs(const plot_args *a, plot_run *runs, const char *png, const char *dir,
                     const char *exe, mt_err *e) {
    int n = a->n_dirs, unit = 1;
    distinct_labels(runs, n);
    for (int k = 0; k < n; k++) {
        unit &= runs[k].unit[0] && strcmp(runs[k].unit, runs[0].unit) == 0;
        printf("plot: %s: %zu logged steps (%g to %g), %zu with test_loss%s%s\n", runs[k].label,
               runs[k].n, runs[k].pts[0].step, runs[k].pts[runs[k].n - 1].step, runs[k].n_eval,
               runs[k].run_id[0] ? ", run " : "", runs[k].run_id);
    }
    for (int k = 0; k < n && !e->code; k++) write_data(dir, k, &runs[k], unit, e);
    char title[512];
    if (a->title)
        snprintf(title, sizeof title, "%s", a->title);
    else if (n == 1)
        snprintf(title, sizeof title, "mpitrain run %.400s", runs[0].label);
    else
        snprintf(title, sizeof title, "mpitrain: %d runs", n);
    plot_job j = {dir, png, title, runs, n};
    if (!e->code) draw(&j, exe, a->out, e);
    return e->code;
}

int mt_cli_plot(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    signal(SIGPIPE, SIG_IGN); /* a gnuplot that dies early is reported, not fatal */
    mt_err e = {0};
    plot_args a = {0};
    plot_run *runs = NULL;
    char png[MT_PATH_LEN] = "", dir[MT_PATH_LEN] = "", exe[MT_PATH_LEN];
    if (!parse_args(argc, argv, &a, &e) && !prepare(a.out, png, dir, exe, &e)) {
        runs = calloc((size_t)a.n_dirs, sizeof *runs);
        if (!runs) mt_err_set(&e, MT_ERR_INTERNAL, "out of memory");
    }
    for (int k = 0; runs && k < a.n_dirs && !e.code; k++)
        if (!locate(&runs[k], a.dirs[k], &e)) read_run(&runs[k], &e);
    if (!e.code && !plot_runs(&a, runs, png, dir, exe, &e))
        printf("plot: wrote %s (%dx%d)\n", a.out, PLOT_WIDTH, PLOT_HEIGHT);
    if (e.code && png[0]) unlink(png); /* mt_file_commit removed it already on its failure */
    if (dir[0]) remove_tmp(dir, a.n_dirs);
    for (int k = 0; runs && k < a.n_dirs; k++) free(runs[k].pts);
    free(runs);
    if (e.code) mt_err_print(&e);
    return e.code;
}
