/* plot.c: minimal SVG line plots (see derf/plot.h). */
#include <math.h>
#include "derf/plot.h"

static const char *COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

void derf_svg_begin(derf_strbuf *b, int width, int height) {
    derf_sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
                      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height, width, height);
}

void derf_svg_end(derf_strbuf *b) { derf_sb_printf(b, "</svg>\n"); }

static double nice_step(double range) {
    double raw = range / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static int mk(const int *markers, int i) { return markers ? markers[i] : 0; }

void derf_svg_panel(derf_strbuf *b, double ox, double oy, double w, double h, const derf_axes *ax,
                    const derf_series *s, int ns) {
    derf_svg_panel_marked(b, ox, oy, w, h, ax, s, ns, NULL);
}

void derf_svg_panel_marked(derf_strbuf *b, double ox, double oy, double w, double h, const derf_axes *ax,
                           const derf_series *s, int ns, const int *markers) {
    double ymin = ax->ymin, ymax = ax->ymax;
    if (ymin == ymax) {
        ymin = INFINITY; ymax = -INFINITY;
        for (int i = 0; i < ns; i++)
            for (int j = 0; j < s[i].n; j++)
                if (isfinite(s[i].y[j])) { ymin = fmin(ymin, s[i].y[j]); ymax = fmax(ymax, s[i].y[j]); }
        if (!(ymin < ymax)) { ymin = (isfinite(ymin) ? ymin : 0) - 1; ymax = ymin + 2; }
        double pad = 0.05 * (ymax - ymin);
        ymin -= pad; ymax += pad;
    }
    double L = ox + 42, R = ox + w - 8, T = oy + 20, B = oy + h - 28;
#define PX(v) (L + ((v) - ax->xmin) / (ax->xmax - ax->xmin) * (R - L))
#define PY(v) (B - ((v) - ymin) / (ymax - ymin) * (B - T))
    derf_sb_printf(b, "<g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
                   L, T, R - L, B - T);
    if (ax->title) derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n",
                                  (L + R) / 2, oy + 14, ax->title);
    double st = nice_step(ax->xmax - ax->xmin);
    for (double v = ceil(ax->xmin / st) * st; v <= ax->xmax + 1e-9; v += st)
        derf_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#555\">%g</text>\n",
                       PX(v), T, PX(v), B, PX(v), B + 12, fabs(v) < 1e-12 ? 0.0 : v);
    st = nice_step(ymax - ymin);
    for (double v = ceil(ymin / st) * st; v <= ymax + 1e-9; v += st)
        derf_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%g</text>\n",
                       L, PY(v), R, PY(v), L - 3, PY(v) + 4, fabs(v) < 1e-12 ? 0.0 : v);
    if (ax->xlabel) derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", (L + R) / 2, B + 25, ax->xlabel);
    if (ax->ylabel) derf_sb_printf(b, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
                                   ox + 10, (T + B) / 2, ax->ylabel);
    for (int i = 0; i < ns; i++) {
        const char *col = COLORS[i % 8];
        if (mk(markers, i) != 2) {
            derf_sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"", col,
                           s[i].dashed ? " stroke-dasharray=\"4 3\"" : "");
            for (int j = 0; j < s[i].n; j++) {
                double y = s[i].y[j];
                if (!isfinite(y)) continue;
                y = fmin(fmax(y, ymin), ymax);
                derf_sb_printf(b, "%.1f,%.1f ", PX(s[i].x[j]), PY(y));
            }
            derf_sb_printf(b, "\"/>\n");
        }
        for (int j = 0; mk(markers, i) && j < s[i].n; j++)
            if (isfinite(s[i].y[j]) && isfinite(s[i].x[j]))
                derf_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s[i].x[j]),
                               PY(fmin(fmax(s[i].y[j], ymin), ymax)), col);
        if (ax->legend && s[i].label)
            derf_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
                              "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                           L + 8, T + 12 + 14 * i, L + 26, T + 12 + 14 * i, col, L + 30, T + 16 + 14 * i, s[i].label);
    }
    derf_sb_printf(b, "</g>\n");
#undef PX
#undef PY
}
