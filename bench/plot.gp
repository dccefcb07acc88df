# plot.gp -- sync write throughput and p99 latency against connection count.
# Called by bench/run.py:  gnuplot -e "datafile='…'; outfile='…'; subtitle='…'" bench/plot.gp
# datafile columns: conns throughput_rps p50_ms p99_ms
if (!exists("datafile")) datafile = 'bench/results/sync_sweep.dat'
if (!exists("outfile")) outfile = 'bench/results/sync_sweep.png'
if (!exists("subtitle")) subtitle = ''
set terminal pngcairo size 900,540 font 'sans,10' noenhanced
set output outfile
set title "duckgrid: POST /update_cell (sync, closed loop, 90% leaf / 10% mid writes)\n".subtitle
set logscale x 2
set xlabel 'connections'
set xtics (1, 4, 16, 64, 256)
set xrange [0.8:330]
set ylabel 'throughput (requests/s)'
set y2label 'latency (ms)'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid xtics ytics
set key top left
set style data linespoints
plot datafile using 1:2 axes x1y1 title 'throughput' lw 2 pt 7 lc rgb '#1f77b4', \
     datafile using 1:4 axes x1y2 title 'p99 latency' lw 2 pt 5 lc rgb '#d62728', \
     datafile using 1:3 axes x1y2 title 'p50 latency' lw 1 pt 4 dt 2 lc rgb '#ff7f0e'
