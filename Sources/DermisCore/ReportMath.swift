import Foundation

/// The arithmetic of the clinic's reports over plain inputs. The stores count in SQL (a histogram of values, events and
/// sessions per group, minutes per week); these turn the counts into the figures shown, so the figures are tested here
/// against hand-computed values without a database.
public enum ReportMath {
    /// Groups with fewer than this many are marked "small group": shown with their figures, never hidden, but read with
    /// care. A reporting convention of Dermis, not a clinical figure.
    public static let smallGroup = 10

    /// A distribution's n, median and interquartile range.
    public struct Summary: Codable, Sendable, Equatable {
        public var n: Int
        public var median: Double
        public var q1: Double
        public var q3: Double
        public var min: Double
        public var max: Double
        /// Fewer than `smallGroup`.
        public var small: Bool
    }

    /// The summary of a distribution given as value → how many times it occurs (what `GROUP BY value` answers); nil
    /// when empty. Quartiles interpolate linearly between order statistics at (n − 1)·p — Hyndman & Fan type 7, R's
    /// default and spreadsheets' QUARTILE.INC — so the median of an even count is the mean of the middle two.
    public static func summary<Value: BinaryInteger>(_ histogram: [Value: Int]) -> Summary? {
        let counts = histogram.filter { $0.value > 0 }.map { (value: Double($0.key), count: $0.value) }.sorted { $0.value < $1.value }
        let n = counts.reduce(0) { $0 + $1.count }
        guard n > 0 else { return nil }
        /// The k-th smallest value (from 0).
        func order(_ k: Int) -> Double {
            var seen = 0
            for entry in counts {
                seen += entry.count
                if k < seen { return entry.value }
            }
            return counts[counts.count - 1].value
        }
        func quantile(_ p: Double) -> Double {
            let h = Double(n - 1) * p
            let lower = Int(h.rounded(.down))
            let fraction = h - Double(lower)
            let low = order(lower)
            return fraction == 0 ? low : low + fraction * (order(Swift.min(lower + 1, n - 1)) - low)
        }
        return Summary(n: n, median: quantile(0.5), q1: quantile(0.25), q3: quantile(0.75),
                       min: counts[0].value, max: counts[counts.count - 1].value, small: n < smallGroup)
    }

    /// Events per 100 sessions; nil without sessions.
    public static func per100(_ events: Int, sessions: Int) -> Double? {
        sessions > 0 ? Double(events) * 100 / Double(sessions) : nil
    }

    /// `part` as a percentage of `whole`; nil when `whole` is zero.
    public static func percent(_ part: Double, of whole: Double) -> Double? {
        whole > 0 ? part * 100 / whole : nil
    }

    /// How many days the stock left lasts at the rate of the last `windowDays` days; nil when nothing was used in the
    /// window (no rate to project).
    public static func stockDays(remaining: Int, used: Int, windowDays: Int) -> Double? {
        guard used > 0, windowDays > 0 else { return nil }
        return Double(remaining) / (Double(used) / Double(windowDays))
    }

    /// The minutes covered by a set of intervals (minute of day, start inclusive, end exclusive), overlaps counted once:
    /// the time a room or pen is available is the union of the hours of the practitioners working there.
    public static func unionMinutes(_ intervals: [(start: Int, end: Int)]) -> Int {
        var total = 0
        var current: (start: Int, end: Int)?
        for interval in intervals.filter({ $0.start < $0.end }).sorted(by: { $0.start < $1.start }) {
            if let open = current, interval.start <= open.end {
                current = (open.start, Swift.max(open.end, interval.end))
            } else {
                if let open = current { total += open.end - open.start }
                current = interval
            }
        }
        if let open = current { total += open.end - open.start }
        return total
    }

    /// Intervals (minutes of a day) less the parts covered by `breaks`: a practitioner's working time is their hours
    /// less their breaks.
    public static func subtract(_ breaks: [(start: Int, end: Int)], from intervals: [(start: Int, end: Int)]) -> [(start: Int, end: Int)] {
        var pieces = intervals
        for cut in breaks {
            pieces = pieces.flatMap { piece -> [(start: Int, end: Int)] in
                guard cut.start < piece.end && piece.start < cut.end else { return [piece] }
                return [(piece.start, cut.start), (cut.end, piece.end)].filter { $0.0 < $0.1 }.map { (start: $0.0, end: $0.1) }
            }
        }
        return pieces
    }

    /// The Mondays starting each ISO week that meets `from...to`, the first on or before `from`.
    public static func weekStarts(from: CalendarDate, to: CalendarDate) -> [CalendarDate] {
        guard from <= to else { return [] }
        var monday = from.adding(days: -(from.isoWeekday - 1))
        var weeks: [CalendarDate] = []
        while monday <= to {
            weeks.append(monday)
            monday = monday.adding(days: 7)
        }
        return weeks
    }
}

/// A horizontal bar chart laid out on a fixed grid for a server-rendered SVG: every bar carries its value as text, so
/// the chart reads without colour; the page repeats the figures in a table.
public struct BarChart: Sendable, Hashable {
    public struct Bar: Sendable, Hashable {
        public var label: String
        public var value: Double
        public var text: String
        public var y: Double
        public var width: Double
        /// Drawn hatched: a small group, or anything the page wants marked besides colour.
        public var marked: Bool
    }

    public static let width = 560.0
    public static let labelWidth = 190.0
    public static let valueWidth = 90.0
    public static let rowHeight = 26.0
    public static let barHeight = 16.0

    public var bars: [Bar]
    public var height: Double
    /// The value a full-width bar stands for.
    public var scaleMax: Double

    public init(_ rows: [(label: String, value: Double, text: String, marked: Bool)], scaleMax: Double? = nil) {
        let top = Swift.max(scaleMax ?? 0, rows.map(\.value).max() ?? 0)
        self.scaleMax = top > 0 ? top : 1
        let plot = Self.width - Self.labelWidth - Self.valueWidth
        let full = self.scaleMax
        bars = rows.enumerated().map { i, row in
            Bar(label: row.label, value: row.value, text: row.text, y: Double(i) * Self.rowHeight + 4,
                width: Swift.max(0, plot * row.value / full), marked: row.marked)
        }
        height = Double(Swift.max(rows.count, 1)) * Self.rowHeight + 8
    }
}

/// Intervals on one axis for a server-rendered SVG: a line from the lower to the upper quartile and a marker at the
/// median for each row, the figures as text beside it, and a zero line.
public struct IntervalChart: Sendable, Hashable {
    public struct Row: Sendable, Hashable {
        public var label: String
        public var text: String
        public var y: Double
        public var low: Double
        public var mid: Double
        public var high: Double
        public var marked: Bool
    }

    public static let width = 680.0
    public static let labelWidth = 230.0
    public static let valueWidth = 230.0
    public static let rowHeight = 26.0

    public var rows: [Row]
    public var height: Double
    public var axisMin: Double
    public var axisMax: Double
    /// Where the axis' zero is (nil when zero is off the axis).
    public var zeroX: Double?
    public var ticks: [(x: Double, label: String)] {
        stride(from: axisMin, through: axisMax, by: 1).map { (x: x($0), label: String(format: "%g", $0)) }
    }

    public init(_ rows: [(label: String, low: Double, mid: Double, high: Double, text: String, marked: Bool)], axis: ClosedRange<Double>) {
        axisMin = axis.lowerBound
        axisMax = axis.upperBound > axis.lowerBound ? axis.upperBound : axis.lowerBound + 1
        height = Double(Swift.max(rows.count, 1)) * Self.rowHeight + 28
        self.rows = []
        self.rows = rows.enumerated().map { i, row in
            Row(label: row.label, text: row.text, y: Double(i) * Self.rowHeight + 13, low: x(row.low), mid: x(row.mid), high: x(row.high), marked: row.marked)
        }
        zeroX = axis.contains(0) ? x(0) : nil
    }

    /// The x of a value on the axis.
    public func x(_ value: Double) -> Double {
        let plot = Self.width - Self.labelWidth - Self.valueWidth
        return Self.labelWidth + plot * (value - axisMin) / (axisMax - axisMin)
    }

    public static func == (lhs: IntervalChart, rhs: IntervalChart) -> Bool { lhs.rows == rhs.rows && lhs.axisMin == rhs.axisMin && lhs.axisMax == rhs.axisMax }
    public func hash(into hasher: inout Hasher) { hasher.combine(rows); hasher.combine(axisMin); hasher.combine(axisMax) }
}
