set terminal pngcairo size 900,420 font ',10'
set output 'throughput.png'
set multiplot layout 1,2 title 'Ampule vs :peer, Linux 6.18.44-fc-v657, 2 cores, 23 GiB, OTP 25, Elixir 1.14.0, 5.0.2 (liblxc), cgroup v1, 2026-11-30' font ',8'
set xlabel 'boots in flight'
set logscale x 2
set xtics (1, 2, 4, 8)
set xrange [0.8:10]
set key top left
set grid
set ylabel 'boots per second'
set yrange [0:*]
plot 'throughput.dat' using 1:2 with linespoints title 'distribution', '' using 1:3 with linespoints title 'sandbox', '' using 1:4 with linespoints title ':peer'
set ylabel 'median boot latency (ms)'
plot 'throughput.dat' using 1:5 with linespoints title 'distribution', '' using 1:6 with linespoints title 'sandbox', '' using 1:7 with linespoints title ':peer'
unset multiplot
