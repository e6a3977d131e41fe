/* derf/plot.h: minimal SVG line plots (axes, ticks, labels, legend) for `derf functions` shapes
 * and training curves. Panels are appended to a strbuf between begin and end. */
#ifndef DERF_PLOT_H
#define DERF_PLOT_H

#include "derf/strbuf.h"

typedef struct {
    const char *label;  /* legend text, NULL for none */
    const double *x, *y;
    int n;
    int dashed;
} derf_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    double xmin, xmax, ymin, ymax; /* ymin == ymax: fit to the data */
    int legend;
} derf_axes;

void derf_svg_begin(derf_strbuf *b, int width, int height);
void derf_svg_panel(derf_strbuf *b, double ox, double oy, double w, double h, const derf_axes *ax,
                    const derf_series *s, int ns);
/* The same with markers per series (NULL: lines only): 0 a line, 1 a line with a dot at every point,
 * 2 dots only (a scatter plot). */
void derf_svg_panel_marked(derf_strbuf *b, double ox, double oy, double w, double h, const derf_axes *ax,
                           const derf_series *s, int ns, const int *markers);
void derf_svg_end(derf_strbuf *b);

#endif
